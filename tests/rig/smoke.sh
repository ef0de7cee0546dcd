#!/bin/bash
# Smoke test of the soft-RoCE rig with real verbs: what CI runs before the RDMA suite.
#
# Usage: tests/rig/smoke.sh [--quick] [--keep] [-v]
#   --quick  skip the slower checks (hung-guest timeout, no-rdma guest)
#   --keep   keep the work directory (logs, rig_probe binary) and print its path
#   -v       print every step's full output
#
# Steps, each timed:
#   setup          tests/rig/setup.sh (packages, guest kernel, initramfs; cached)
#   build          gcc rig_probe.c against libibverbs and librdmacm
#   host-probe     rig_probe on the host: must report "no device" (exit 2)
#   guest-probe    rig_probe in a guest: rxe0 active, 64 MiB MR, ODP reported, rdma_cm bind
#   guest-nordma   rig_probe in a --no-rdma guest: must report "no device" (exit 2)
#   loopback-bw    ib_write_bw -R --retry_count=6, server and client in one guest
#   two-guest-bw   ib_write_bw -R --retry_count=6 from guest B to guest A
#   hang-timeout   a guest whose command hangs is killed at its timeout (exit 124) and
#                  no QEMU of it is left
#
# Ends with "smoke: N passed, N failed, N skipped". Exit status: 0 when nothing failed,
# 77 when the rig cannot run on this machine (everything skipped), 1 otherwise.
set -u -o pipefail

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QUICK=0
KEEP=0
VERBOSE=0
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--keep) KEEP=1 ;;
	-v | --verbose) VERBOSE=1 ;;
	-h | --help)
		sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "smoke: unknown option $1" >&2
		exit 64
		;;
	esac
	shift
done

W=$(mktemp -d /tmp/ferry-rig-smoke.XXXXXX) || exit 1
cleanup() { [ "$KEEP" = 1 ] && echo "smoke: work directory kept: $W" || rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASS=0
FAIL=0
SKIP=0
ROWS=()
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# record NAME RESULT WALL NOTE
record() {
	case "$2" in
	PASS) PASS=$((PASS + 1)) ;;
	FAIL) FAIL=$((FAIL + 1)) ;;
	SKIP) SKIP=$((SKIP + 1)) ;;
	esac
	ROWS+=("$(printf '%-14s %-5s %7ss  %s' "$1" "$2" "$3" "$4")")
	echo "smoke: $1: $2 (${3}s) $4"
	if [ "$2" = FAIL ] || [ "$VERBOSE" = 1 ]; then
		echo "smoke: --- $1 output ($W/$1.log) ---"
		if [ "$VERBOSE" = 1 ]; then cat "$W/$1.log"; else tail -n 40 "$W/$1.log"; fi
		echo "smoke: --- end of $1 output ---"
	fi
}

# step NAME command...: runs the command with its output in $W/NAME.log; sets RC and WALL.
step() {
	local name=$1 t0
	shift
	t0=$(now)
	"$@" >"$W/$name.log" 2>&1
	RC=$?
	WALL=$(secs "$t0" "$(now)")
}

val() { sed -n "s/^$1=//p" "$2" | head -n1; }

finish() {
	echo
	echo "step           result   wall   notes"
	printf '%s\n' "${ROWS[@]}"
	echo "smoke: $PASS passed, $FAIL failed, $SKIP skipped"
	if [ "$FAIL" -gt 0 ]; then exit 1; fi
	if [ "$PASS" = 0 ] || [ "${1:-}" = skip ]; then exit 77; fi
	exit 0
}

skip_rest() {
	local s
	for s in "$@"; do record "$s" SKIP 0 "$WHY"; done
}
ALL_GUEST_STEPS=(guest-probe guest-nordma loopback-bw two-guest-bw hang-timeout)

# ---------------------------------------------------------------- setup
step setup "$RIG_DIR/setup.sh"
if [ "$RC" = 77 ]; then
	WHY="rig unavailable: $(grep 'cannot prepare' "$W/setup.log" | tail -n1)"
	record setup SKIP "$WALL" "$WHY"
	skip_rest build host-probe "${ALL_GUEST_STEPS[@]}"
	finish skip
elif [ "$RC" != 0 ]; then
	record setup FAIL "$WALL" "setup.sh exit $RC"
	finish
fi
record setup PASS "$WALL" "kernel $(basename "$(tail -n1 "$W/setup.log")")"

# ---------------------------------------------------------------- build
PROBE="$W/rig_probe"
step build gcc -std=c11 -O2 -Wall -Wextra -Werror -o "$PROBE" "$RIG_DIR/rig_probe.c" -libverbs -lrdmacm
if [ "$RC" != 0 ]; then
	record build FAIL "$WALL" "gcc exit $RC"
	WHY="no rig_probe"
	skip_rest host-probe "${ALL_GUEST_STEPS[@]}"
	finish
fi
record build PASS "$WALL" ""

# ---------------------------------------------------------------- host
step host-probe "$PROBE"
case "$RC" in
2) record host-probe PASS "$WALL" "no RDMA device on the host (exit 2): $(grep -o 'no RDMA device.*' "$W/host-probe.log")" ;;
0) record host-probe PASS "$WALL" "the host has an RDMA device: $(val device "$W/host-probe.log")" ;;
*) record host-probe FAIL "$WALL" "exit $RC (expected 2: no device)" ;;
esac

# ---------------------------------------------------------------- one guest: probe
step guest-probe "$RIG_DIR/run-guest.sh" -t 240 -- "$PROBE" -a 192.0.2.15
if [ "$RC" = 77 ]; then
	WHY="rig cannot run: $(grep 'cannot run the rig' "$W/guest-probe.log" | tail -n1)"
	record guest-probe SKIP "$WALL" "$WHY"
	skip_rest guest-nordma loopback-bw two-guest-bw hang-timeout
	finish skip
fi
L="$W/guest-probe.log"
if [ "$RC" = 0 ] && grep -qx 'result=ok' "$L" && grep -qx 'port1_state=active' "$L" &&
	grep -qx 'mr_bytes=67108864' "$L" && grep -q '^odp_supported=' "$L" &&
	grep -qx 'cm_device=rxe0' "$L"; then
	record guest-probe PASS "$WALL" "$(val device "$L") mtu $(val port1_active_mtu "$L"), 64MiB MR in $(val mr_reg_seconds "$L")s, odp_supported=$(val odp_supported "$L") (odp reg: $(val odp_reg_mr "$L")), $(grep -o 'wall=.*' "$L")"
else
	record guest-probe FAIL "$WALL" "exit $RC"
fi

# ---------------------------------------------------------------- one guest without rdma
if [ "$QUICK" = 1 ]; then
	WHY="--quick"
	skip_rest guest-nordma
else
	step guest-nordma "$RIG_DIR/run-guest.sh" --no-rdma -t 240 -- "$PROBE"
	if [ "$RC" = 2 ] && grep -qx 'devices=0' "$W/guest-nordma.log"; then
		record guest-nordma PASS "$WALL" "no device (exit 2) as on the host"
	else
		record guest-nordma FAIL "$WALL" "exit $RC (expected 2: no device)"
	fi
fi

# ---------------------------------------------------------------- one guest: loopback perftest
step loopback-bw "$RIG_DIR/run-guest.sh" -t 300 -- sh "$RIG_DIR/guest/perftest.sh" loopback
L="$W/loopback-bw.log"
if [ "$RC" = 0 ] && grep -q '^bw_average_MBps=' "$L"; then
	record loopback-bw PASS "$WALL" "64KiB x 200: $(val bw_average_MBps "$L") MB/s, $(grep -o 'wall=.*' "$L")"
else
	record loopback-bw FAIL "$WALL" "exit $RC"
fi

# ---------------------------------------------------------------- two guests: perftest
step two-guest-bw "$RIG_DIR/run-two-guests.sh" -t 300 -- \
	sh "$RIG_DIR/guest/perftest.sh" server --- sh "$RIG_DIR/guest/perftest.sh" client
L="$W/two-guest-bw.log"
if [ "$RC" = 0 ] && [ "$(grep -c '^bw_average_MBps=' "$L")" = 2 ]; then
	record two-guest-bw PASS "$WALL" "64KiB x 200: $(grep '^bw_average_MBps=' "$L" | tail -n1 | cut -d= -f2) MB/s ($(grep -o 'attempts=[0-9]*' "$L")), $(grep -o 'rig2: A rc.*' "$L" | cut -c7-)"
else
	record two-guest-bw FAIL "$WALL" "exit $RC"
fi

# ---------------------------------------------------------------- a hung guest is killed
if [ "$QUICK" = 1 ]; then
	WHY="--quick"
	skip_rest hang-timeout
else
	# The out dir is on QEMU's command line (-virtfs path=), so a leftover QEMU of this
	# run can be found by it.
	HANG="$W/hang-out"
	step hang-timeout "$RIG_DIR/run-guest.sh" -t 25 --out-dir "$HANG" -- sleep 3600
	LEFT=$(pgrep -f -- "path=$HANG" || true)
	if [ "$RC" = 124 ] && [ -z "$LEFT" ] && grep -q 'timeout' "$W/hang-timeout.log"; then
		record hang-timeout PASS "$WALL" "exit 124 at the 25s timeout, no QEMU left"
	else
		record hang-timeout FAIL "$WALL" "exit $RC (expected 124), leftover QEMU pids: ${LEFT:-none}"
		for p in $LEFT; do kill -KILL "$p" 2>/dev/null; done
	fi
fi

finish
