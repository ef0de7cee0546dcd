#!/bin/bash
# Measure the rig's fixed costs: wall time from launch to the returned status, median of N.
#
# Usage: tests/rig/timings.sh [-n N] [case...]
# Cases (default: all):
#   pvh          one guest, PVH vmlinux, -smp 2, command `true`
#   bzimage      one guest, compressed bzImage, -smp 2, command `true`
#   pvh-smp1     one guest, PVH, -smp 1 -m 512, command `true`
#   nordma       one guest without RDMA modules, command `true`
#   loopback-bw  one guest, one ib_write_bw -R (64 KiB x 200) server and client in it
#   two          two guests (-smp 1 each), command `true` in both
#   two-bw       two guests, one ib_write_bw -R (64 KiB x 200) from B to A
# Prints one line per run and a median per case. The host's load average is printed too:
# on a shared 2-core machine other jobs move these numbers a lot.
set -u -o pipefail
RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=3
if [ "${1:-}" = -n ]; then
	N=$2
	shift 2
fi
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(pvh bzimage pvh-smp1 nordma loopback-bw two two-bw)

KEEP=$(mktemp -d /tmp/ferry-rig-timings.XXXXXX)

# run_case CASE OUTDIR
run_case() {
	local R=("$RIG_DIR/run-guest.sh" --out-dir "$2") T=("$RIG_DIR/run-two-guests.sh" --out-dir "$2")
	local P="$RIG_DIR/guest/perftest.sh"
	case "$1" in
	pvh) "${R[@]}" -- true ;;
	bzimage) "${R[@]}" --bzimage -- true ;;
	pvh-smp1) "${R[@]}" -s 1 -m 512 -- true ;;
	nordma) "${R[@]}" --no-rdma -- true ;;
	loopback-bw) "${R[@]}" -- sh "$P" loopback ;;
	two) "${T[@]}" -- true --- true ;;
	two-bw) "${T[@]}" -- sh "$P" server --- sh "$P" client ;;
	*) echo "unknown case $1" >&2; return 64 ;;
	esac
}

for c in "${CASES[@]}"; do
	walls=()
	for i in $(seq "$N"); do
		load=$(cut -d' ' -f1 /proc/loadavg)
		t0=$(date +%s.%N)
		run_case "$c" "$KEEP/$c.$i" >"$KEEP/$c.$i.log" 2>&1
		rc=$?
		w=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
		echo "$c run $i: rc=$rc wall=${w}s load=$load"
		if [ $rc = 0 ]; then
			rm -rf "$KEEP/$c.$i" "$KEEP/$c.$i.log"
		else
			echo "  (failed: output kept in $KEEP/$c.$i and $KEEP/$c.$i.log)"
		fi
		walls+=("$w")
	done
	med=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
	echo "$c: median ${med}s of $N (${walls[*]})"
done
rmdir "$KEEP" 2>/dev/null || true
