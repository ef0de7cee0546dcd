#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The ThreadSanitizer job: migrations of the synthetic guest between two
# TSan-built `ferry` processes, over the paths where threads meet (the data
# path's worker pool on both sides, the userfaultfd dirty log against running
# vCPUs, the watchdog cutting a migration short, cancel from a signal).
#
# Why not ferry-tests: Criterion cannot start under TSan (its inheritable
# arena is mapped at random addresses in a range TSan reserves; upstream
# Criterion issue 274), so the suites' scenarios are driven through the CLI.
#
#   FERRY_TSAN_BUILD=build-tsan bash tests/tsan/run.sh
#
# Build first: cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
#                -DFERRY_SANITIZE=thread && cmake --build build-tsan -j2
# Exits non-zero when a scenario fails or TSan reports anything not in
# tests/tsan/tsan.supp (each entry there says why).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FERRY_TSAN_BUILD:-$ROOT/build-tsan}
FERRY=$BUILD/ferry
LOGS=${FERRY_TSAN_LOGS:-$BUILD/tsan-logs}
rm -rf "$LOGS"
mkdir -p "$LOGS"
export TSAN_OPTIONS="log_path=$LOGS/tsan second_deadlock_stack=1 suppressions=$ROOT/tests/tsan/tsan.supp"
passed=0
failed=0

if [[ ! -x $FERRY ]]; then
	echo "no TSan build at $BUILD (see the header of this script)"
	exit 1
fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# scenario NAME EXPECT_SEND EXPECT_LISTEN "send args" "listen args"
# EXPECT_*: completed / failed (the status word in the JSON result)
scenario() {
	local name=$1 want_s=$2 want_l=$3 sargs=$4 largs=$5 port uri lpid ok=1
	port=$(free_port)
	uri=tcp:127.0.0.1:$port
	[[ $sargs == unix* ]] && uri=unix:$LOGS/$name.sock
	[[ $sargs == rdma* ]] && uri=rdma:127.0.0.1:$port
	# shellcheck disable=SC2086 # word splitting of the argument lists is wanted
	"$FERRY" listen "$uri" $largs --json >"$LOGS/$name.listen.json" 2>"$LOGS/$name.listen.err" &
	lpid=$!
	sleep 1
	sargs=${sargs#unix}
	# shellcheck disable=SC2086
	"$FERRY" send "$uri" ${sargs#rdma} --json >"$LOGS/$name.send.json" 2>"$LOGS/$name.send.err"
	wait "$lpid"
	grep -q "\"status\":\"$want_s\"" "$LOGS/$name.send.json" || ok=0
	grep -q "\"status\":\"$want_l\"" "$LOGS/$name.listen.json" || ok=0
	if [[ $want_l == completed ]] && ! grep -q '"verified":true' "$LOGS/$name.listen.json"; then
		ok=0
	fi
	if ((ok)); then
		passed=$((passed + 1))
		echo "PASS $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name (send: $(head -c 300 "$LOGS/$name.send.json"); listen: $(head -c 300 "$LOGS/$name.listen.json"))"
	fi
}

G="--ram 64M --vcpus 2"
scenario single completed completed "$G --dirty-rate 16M --timeout 120000" "$G --timeout 120000"
scenario lanes4 completed completed "$G --dirty-rate 16M --channels 4 --timeout 120000" "$G --timeout 120000"
scenario unix-zerocopy completed completed "unix $G --dirty-rate 16M --channels 3 --zerocopy --huge --timeout 120000" "$G --huge --timeout 120000"
scenario auto-converge completed completed "$G --dirty-rate 256M --channels 2 --auto-converge --max-bandwidth 64M --timeout 120000" "$G --timeout 120000"
# rdma: on a host without a device: the offer falls back to TCP lanes (with a
# device, the RDMA lanes' threads).
scenario rdma-or-fallback completed completed "rdma $G --dirty-rate 16M --channels 2 --timeout 120000" "$G --timeout 120000"
# TLS (PSK) on the main stream and every lane: GnuTLS sessions in the worker threads.
printf 'ferry-tsan:%s\n' "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >"$LOGS/psk.txt"
scenario tls-psk-lanes completed completed "$G --dirty-rate 16M --channels 2 --tls-psk $LOGS/psk.txt --timeout 120000" "$G --tls-psk $LOGS/psk.txt --timeout 120000"
# The watchdog ends it mid-round: workers aborted on both sides.
scenario timeout-mid-round failed failed "$G --dirty-rate 16M --channels 2 --max-bandwidth 16M --timeout 1500" "$G --timeout 1500"

reports=$(find "$LOGS" -name 'tsan.*' | wc -l)
if ((reports)); then
	echo "ThreadSanitizer reports:"
	for f in "$LOGS"/tsan.*; do
		grep -m3 -E 'WARNING|SUMMARY' "$f"
	done
	failed=$((failed + reports))
fi
echo "tsan: $passed passed, $failed failed"
((failed == 0))
