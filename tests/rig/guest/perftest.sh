#!/bin/sh
# Guest side of smoke.sh: one ib_write_bw over rdma_cm on rxe0. Runs inside a rig guest.
#
# Usage: perftest.sh loopback|server|client
#   loopback  server and client in this guest, client to $RIG_IP
#   server    server only (guest A of a pair); once its rdma_cm listener exists it accepts
#             one TCP connection on port 48998 to tell the client so
#   client    client only, to $RIG_PEER_IP: waits for that signal, then connects (and
#             still retries a rejected first connection)
#
# Environment: BW_SIZE (bytes, default 65536), BW_ITERS (default 200), BW_TIMEOUT (seconds
# each perftest process may live, default 90), BW_ATTEMPTS (client tries, default 10).
#
# Traps handled (docs/rigs.md): rxe treats retry_cnt 7 as infinite, so --retry_count=6;
# perftest never gives up on a dead peer, so every process runs under `timeout`; a client
# that connects before the listener exists is REJECTED (and the server may then hang), so
# the loopback client waits for the LISTEN cm_id, and the cross-guest client waits for the
# server's ready signal on a TCP side channel; perftest block-buffers a redirected
# stdout, so stdbuf -oL.
# Prints the perftest output and a line "bw_average_MBps=N"; exits 0 when every perftest
# process exited 0.
set -u
MODE=${1:-loopback}
SIZE=${BW_SIZE:-65536}
ITERS=${BW_ITERS:-200}
T=${BW_TIMEOUT:-90}
ATTEMPTS=${BW_ATTEMPTS:-10}
OUT=${RIG_OUT:-/tmp}
ARGS="-R -F -d rxe0 -s $SIZE -n $ITERS --retry_count=6"
READY_PORT=48998

bw() { timeout -k 5 "$T" stdbuf -oL ib_write_bw $ARGS "$@"; }

# The BW average column of the result line that follows perftest's "#bytes" header.
report() {
	awk '/#bytes/ { getline; if (NF >= 4) print "bw_average_MBps=" $4 }' "$1"
}

wait_listener() {
	n=0
	until rdma res show cm_id 2>/dev/null | grep -q 'state LISTEN'; do
		n=$((n + 1))
		[ $n -ge 300 ] && return 1
		sleep 0.1
	done
	return 0
}

case "$MODE" in
loopback)
	bw >"$OUT/server.out" 2>&1 &
	srv=$!
	if ! wait_listener; then
		echo "perftest.sh: the server did not listen within 30 s"
		kill "$srv"
		cat "$OUT/server.out"
		exit 1
	fi
	bw "$RIG_IP" >"$OUT/client.out" 2>&1
	crc=$?
	wait "$srv"
	src=$?
	echo "--- server rc=$src"
	cat "$OUT/server.out"
	echo "--- client rc=$crc"
	cat "$OUT/client.out"
	report "$OUT/client.out"
	[ "$crc" = 0 ] && [ "$src" = 0 ]
	;;
server)
	bw >"$OUT/server.out" 2>&1 &
	srv=$!
	if ! wait_listener; then
		echo "perftest.sh: the server did not listen within 30 s"
		kill "$srv"
		cat "$OUT/server.out"
		exit 1
	fi
	# Tell the client (one TCP connection); bounded like the server itself.
	timeout "$T" busybox nc -l -p $READY_PORT </dev/null >/dev/null 2>&1 ||
		echo "perftest.sh: no client asked whether the server is ready"
	wait "$srv"
	src=$?
	echo "--- server rc=$src"
	cat "$OUT/server.out"
	report "$OUT/server.out"
	exit $src
	;;
client)
	n=0
	until busybox nc -w 1 "$RIG_PEER_IP" $READY_PORT </dev/null >/dev/null 2>&1; do
		n=$((n + 1))
		if [ $n -ge $((T * 4)) ]; then
			echo "perftest.sh: the server never said it was ready"
			exit 1
		fi
		sleep 0.25
	done
	i=1
	while :; do
		bw "$RIG_PEER_IP" >"$OUT/client.out" 2>&1
		crc=$?
		[ $crc = 0 ] && break
		# 124/137: timeout fired; the connection was made, retrying would not help.
		if [ $i -ge "$ATTEMPTS" ] || [ $crc = 124 ] || [ $crc = 137 ]; then
			break
		fi
		echo "perftest.sh: attempt $i failed (rc $crc), retrying"
		tail -n 3 "$OUT/client.out"
		i=$((i + 1))
		sleep 1
	done
	echo "--- client rc=$crc attempts=$i"
	cat "$OUT/client.out"
	report "$OUT/client.out"
	exit $crc
	;;
*)
	echo "perftest.sh: unknown mode $MODE" >&2
	exit 64
	;;
esac
