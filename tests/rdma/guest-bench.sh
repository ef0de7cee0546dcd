#!/bin/sh
# Guest side of bench-in-rig.sh: ferry's RDMA WRITE throughput against perftest's
# ib_write_bw on the same device (loopback through rxe0), same queue-pair count and
# message size, runs interleaved (perftest, ferry, perftest, ferry...) so that drift in
# the emulator's speed hits both alike; then registration setup costs.
#
# Usage: guest-bench.sh FERRY_RDMA_BW
# Environment: REPEATS (3), TOTAL_MIB moved per run (64), CASES ("q:size ..."),
#   SETUP_MIB (256; 0 skips the registration part), DEV (rxe0).
# Prints raw lines, then one summary line per case:
#   case q=2 s=65536 ib_write_bw=[a b c] median=B ferry=[x y z] median=F ratio=F/B
# ib_write_bw busy-polls its completion queue (its -e, events, is refused for WRITE:
# "Events feature not available on WRITE verb"); ferry sleeps on its completion
# channel. Under TCG with 2 vCPUs a spinning poller takes CPU from rxe's own work.
set -u
BW=$1
IP=${RIG_IP:?not in the rig}
DEV=${DEV:-rxe0}
REPEATS=${REPEATS:-3}
TOTAL_MIB=${TOTAL_MIB:-64}
CASES=${CASES:-"1:65536 2:65536 4:65536 1:1048576 2:1048576 4:1048576"}
SETUP_MIB=${SETUP_MIB:-256}
T=$(mktemp -d /tmp/guest-bench.XXXXXX)

wait_listener() { # server pid
	n=0
	until rdma res show cm_id 2>/dev/null | grep -q 'state LISTEN'; do
		n=$((n + 1))
		[ $n -ge 300 ] && return 1
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
	done
}

# ib_write_bw's BW average [MB/sec] (MiB/s), server and client in this guest.
perftest_once() { # q size iters [extra options]
	A="-R -F -d $DEV -q $1 -s $2 -n $3 --retry_count=6 ${4:-}"
	timeout -k 5 180 stdbuf -oL ib_write_bw $A >"$T/srv" 2>&1 &
	srv=$!
	if ! wait_listener $srv; then
		kill $srv 2>/dev/null
		echo "ib_write_bw server did not listen:" >&2
		tail -n 3 "$T/srv" >&2
		return 1
	fi
	timeout -k 5 180 stdbuf -oL ib_write_bw $A "$IP" >"$T/cli" 2>&1
	wait $srv
	awk '/#bytes/ { getline; if (NF >= 4) print $4 }' "$T/cli"
}

ferry_once() { # q size iters
	"$BW" -a "$IP" -q "$1" -s "$2" -n "$3" -m 64 >"$T/ferry" 2>&1
	cat "$T/ferry" >&2
	sed -n 's/.*MiB\/s=\([0-9.]*\).*/\1/p' "$T/ferry"
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "nan") }'; }

echo "guest-bench: $(nproc) vCPUs, kernel $(uname -r), $DEV active_mtu $(ibv_devinfo -d "$DEV" | awk '/active_mtu/ { print $2 }')"
SUMMARY=""
for c in $CASES; do
	q=${c%%:*}
	s=${c#*:}
	n=$((TOTAL_MIB * 1048576 / s / q))
	P=""
	F=""
	r=0
	while [ $r -lt "$REPEATS" ]; do
		p=$(perftest_once "$q" "$s" "$n")
		f=$(ferry_once "$q" "$s" "$n")
		echo "run q=$q s=$s n=$n rep=$r ib_write_bw=$p ferry=$f"
		P="$P $p"
		F="$F $f"
		r=$((r + 1))
	done
	pm=$(echo "$P" | median)
	fm=$(echo "$F" | median)
	ratio=$(awk -v a="$fm" -v b="$pm" 'BEGIN { printf (b > 0 ? "%.2f" : "nan"), a / b }')
	SUMMARY="$SUMMARY
case q=$q s=$s n=$n ib_write_bw=[$P ] median=$pm ferry=[$F ] median=$fm ratio=$ratio"
done
echo "$SUMMARY"

if [ "$SETUP_MIB" -gt 0 ]; then
	echo
	echo "registration: $SETUP_MIB MiB each side, 1 lane, 1 MiB writes over the whole region"
	for reg in pin-all chunked odp; do
		r=0
		while [ $r -lt "$REPEATS" ]; do
			"$BW" -a "$IP" -q 1 -s 1048576 -n "$SETUP_MIB" -m "$SETUP_MIB" -r $reg 2>&1 |
				sed "s/^/setup reg=$reg rep=$r /"
			r=$((r + 1))
		done
	done
fi
rm -rf "$T"
