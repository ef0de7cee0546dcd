#!/bin/bash
# Compare ferry's RDMA WRITE throughput with perftest's ib_write_bw in one soft-RoCE guest
# (tests/rig/run-guest.sh; see guest-bench.sh for what runs), and time the registration
# strategies. With --engine: whole migrations (`ferry send rdma:`) instead, against
# ib_write_bw, and the setup time of pin-all against chunked registration
# (guest-engine-bench.sh; engine-bench-in-rig.sh is this with --engine). Numbers under TCG
# are noisy: compare within one run, not across runs.
#
# Usage: tests/rdma/bench-in-rig.sh [--engine] [-b BUILD_DIR] [-t SEC] [-s SMP] [-e NAME=VALUE]...
#   -e passes REPEATS, TOTAL_MIB, CASES, SETUP_MIB to guest-bench.sh
#      (with --engine: REPEATS, MIB, QPS, SETUP_MIB to guest-engine-bench.sh).
# Exit status: the guest script's; 77 when the rig cannot run here.
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
RIG=${FERRY_RIG:-$SRC/tests/rig}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
TIMEOUT=1800
SMP=2
ENGINE=
ENVS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--engine) ENGINE=1 ;;
	-b) BUILD=$2; shift ;;
	-t) TIMEOUT=$2; shift ;;
	-s) SMP=$2; shift ;;
	-e) ENVS+=(-e "$2"); shift ;;
	*) echo "bench-in-rig: unknown option $1" >&2; exit 64 ;;
	esac
	shift
done
BUILD=$(cd "$BUILD" && pwd -P) || exit 64
if [ -n "$ENGINE" ]; then
	GUEST=guest-engine-bench.sh PROG=$BUILD/ferry
else
	GUEST=guest-bench.sh PROG=$BUILD/tests/rdma/ferry-rdma-bw
fi
[ -x "$PROG" ] || { echo "bench-in-rig: build $PROG first" >&2; exit 64; }
[ -x "$RIG/run-guest.sh" ] || { echo "bench-in-rig: no rig at $RIG" >&2; exit 77; }
exec "$RIG/run-guest.sh" -t "$TIMEOUT" -m 2048 -s "$SMP" ${ENVS[@]+"${ENVS[@]}"} -- \
	"$HERE/$GUEST" "$PROG"
