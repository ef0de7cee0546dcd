#!/bin/sh
# Guest side of engine-bench-in-rig.sh: whole migrations by `ferry send rdma:` against
# perftest's ib_write_bw on the same device (loopback through rxe0), same queue-pair count
# and message size, interleaved; then the setup time of pin-all against chunked.
#
# Usage: guest-engine-bench.sh FERRY_CLI
# Environment: REPEATS (3), MIB of guest RAM per throughput run (128), QPS ("1 2 4"),
#   SETUP_MIB (256; 0 skips the setup part), DEV (rxe0).
#
# The migration is non-live (`--non-live`: one pass, no vCPUs), so every page goes once,
# and the guest RAM holds no zero page: each 2 MiB chunk of RAM is one run, so one RDMA
# WRITE of 2 MiB (pin-all). ib_write_bw runs with -s 2097152 and as many writes.
# ferry's rate: page bytes / (total_ms - setup_ms) of the source, i.e. from the first
# page to the destination's verdict (its last flush and the device state included).
set -u
FERRY=$1
IP=${RIG_IP:?not in the rig}
DEV=${DEV:-rxe0}
REPEATS=${REPEATS:-3}
MIB=${MIB:-128}
QPS=${QPS:-"1 2 4"}
SETUP_MIB=${SETUP_MIB:-256}
S=2097152
T=$(mktemp -d /tmp/guest-engine-bench.XXXXXX)
PORT=41000

wait_cm_listener() { # server pid
	n=0
	until rdma res show cm_id 2>/dev/null | grep -q 'state LISTEN'; do
		n=$((n + 1))
		[ $n -ge 300 ] && return 1
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
	done
}

# ib_write_bw's BW average (MiB/s), server and client in this guest.
perftest_once() { # q iters
	A="-R -F -d $DEV -q $1 -s $S -n $2 --retry_count=6"
	timeout -k 5 180 stdbuf -oL ib_write_bw $A >"$T/srv" 2>&1 &
	srv=$!
	if ! wait_cm_listener $srv; then
		kill $srv 2>/dev/null
		echo "ib_write_bw server did not listen" >&2
		return 1
	fi
	timeout -k 5 180 stdbuf -oL ib_write_bw $A "$IP" >"$T/cli" 2>&1
	wait $srv
	awk '/#bytes/ { getline; if (NF >= 4) print $4 }' "$T/cli"
}

# /proc/net/tcp lists the port in hex with state 0A (LISTEN).
wait_tcp_listener() { # port pid
	hex=$(printf '%04X' "$1")
	n=0
	until grep -q ":$hex [0-9A-F:]* 0A" /proc/net/tcp; do
		n=$((n + 1))
		[ $n -ge 600 ] && return 1
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
}

jget() { # file key
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2], ""))' "$1" "$2"
}

# One migration; prints "MiB/s setup_ms src_reg_us dst_reg_us transport registration".
ferry_once() { # q reg mib
	PORT=$((PORT + 2))
	timeout -k 5 300 "$FERRY" listen "rdma:$IP:$PORT" --ram "${3}M" --rdma-reg "$2" --json \
		>"$T/dst" 2>"$T/dst.err" &
	dst=$!
	if ! wait_tcp_listener $PORT $dst; then
		echo "ferry listen did not listen:" >&2
		cat "$T/dst.err" >&2
		return 1
	fi
	timeout -k 5 300 "$FERRY" send "rdma:$IP:$PORT" --ram "${3}M" --non-live --channels "$1" \
		--rdma-reg "$2" --no-fallback --json >"$T/src" 2>"$T/src.err"
	wait $dst
	if [ "$(jget "$T/src" status)" != completed ] || [ "$(jget "$T/dst" verified)" != True ]; then
		echo "ferry migration failed:" >&2
		cat "$T/src.err" "$T/dst.err" >&2
		jget "$T/dst" verify_error >&2
		return 1
	fi
	tot=$(jget "$T/src" total_ms)
	set_=$(jget "$T/src" setup_ms)
	nb=$(jget "$T/src" normal_bytes)
	awk -v b="$nb" -v t="$tot" -v s="$set_" 'BEGIN { printf "%.1f ", b / 1048576 / ((t - s) / 1000) }'
	echo "$set_ $(jget "$T/src" registration_us) $(jget "$T/dst" registration_us)" \
		"$(jget "$T/src" transport) $(jget "$T/src" registration)"
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "nan") }'; }

echo "guest-engine-bench: $(nproc) vCPUs, kernel $(uname -r), $DEV active_mtu $(ibv_devinfo -d "$DEV" | awk '/active_mtu/ { print $2 }')"
SUMMARY=""
for q in $QPS; do
	n=$((MIB * 1048576 / S / q))
	P=""
	F=""
	r=0
	while [ $r -lt "$REPEATS" ]; do
		p=$(perftest_once "$q" "$n")
		f=$(ferry_once "$q" pin-all "$MIB")
		echo "run q=$q s=$S rep=$r ib_write_bw=$p ferry=[$f]"
		P="$P $p"
		F="$F ${f%% *}"
		r=$((r + 1))
	done
	pm=$(echo "$P" | median)
	fm=$(echo "$F" | median)
	ratio=$(awk -v a="$fm" -v b="$pm" 'BEGIN { printf (b > 0 ? "%.2f" : "nan"), a / b }')
	SUMMARY="$SUMMARY
case q=$q s=$S ib_write_bw=[$P ] median=$pm ferry=[$F ] median=$fm ratio=$ratio"
done
echo "$SUMMARY"

if [ "$SETUP_MIB" -gt 0 ]; then
	echo
	echo "setup: $SETUP_MIB MiB guest, 1 queue pair; MiB/s setup_ms src_reg_us dst_reg_us transport reg"
	r=0
	while [ $r -lt "$REPEATS" ]; do
		for reg in pin-all chunked; do
			echo "setup reg=$reg rep=$r $(ferry_once 1 $reg "$SETUP_MIB")"
		done
		r=$((r + 1))
	done
fi
rm -rf "$T"
