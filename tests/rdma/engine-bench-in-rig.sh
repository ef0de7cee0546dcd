#!/bin/bash
# Whole migrations over the RDMA data path (`ferry send rdma:`) against perftest's
# ib_write_bw in one soft-RoCE guest, and the setup time of pin-all against chunked
# registration (guest-engine-bench.sh says what runs). TCG numbers are noisy: compare
# within one run.
#
# Usage: tests/rdma/engine-bench-in-rig.sh [-b BUILD_DIR] [-t SEC] [-e NAME=VALUE]...
#   -e passes REPEATS, MIB, QPS, SETUP_MIB to guest-engine-bench.sh.
# Exit status: the guest script's; 77 when the rig cannot run here.
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
RIG=${FERRY_RIG:-$SRC/tests/rig}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
TIMEOUT=1800
ENVS=()
while [ $# -gt 0 ]; do
	case "$1" in
	-b) BUILD=$2; shift ;;
	-t) TIMEOUT=$2; shift ;;
	-e) ENVS+=(-e "$2"); shift ;;
	*) echo "engine-bench-in-rig: unknown option $1" >&2; exit 64 ;;
	esac
	shift
done
BUILD=$(cd "$BUILD" && pwd -P) || exit 64
[ -x "$BUILD/ferry" ] || { echo "engine-bench-in-rig: build the ferry CLI first" >&2; exit 64; }
[ -x "$RIG/run-guest.sh" ] || { echo "engine-bench-in-rig: no rig at $RIG" >&2; exit 77; }
exec "$RIG/run-guest.sh" -t "$TIMEOUT" -m 2048 -s 2 ${ENVS[@]+"${ENVS[@]}"} -- \
	"$HERE/guest-engine-bench.sh" "$BUILD/ferry"
