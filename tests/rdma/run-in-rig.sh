#!/bin/bash
# Run the RDMA suites for real: boot a soft-RoCE guest (tests/rig/run-guest.sh) and run
# the host build's ferry-tests inside it, where rxe0 is an RDMA device.
#
# Usage: tests/rdma/run-in-rig.sh [-b BUILD_DIR] [-f FILTER] [--numa] [-- ferry-tests args...]
#   -b DIR     build tree with tests/ferry-tests (default: $FERRY_BUILD_DIR or ./build)
#   -f FILTER  run only this Criterion filter (default: every rdma suite, the fault
#              suite last; see guest-suite.sh)
#   --numa     boot with two NUMA nodes and the NIC on node 1; rdma_device/* then expects
#              rxe0 on node 1 (e.g. run-in-rig.sh --numa -f 'rdma_device/*')
#   -t SEC     bound on the whole guest run (default 1200)
#   -e N=V     export N=V to the tests in the guest (repeatable), e.g. FERRY_FAULT_ROWS=4
#              (one row of engine_faults) or FERRY_RIG_STACKS=SEC (after SEC seconds of a
#              filtered run, print every thread's stack of the running tests: for a hang)
#
# Environment: FERRY_RIG (the rig's directory, default tests/rig beside this folder),
# FERRY_TEST_LOG (ferry log level in the tests: 0 error .. 3 debug; default 1 warn).
#
# Tests run one at a time (-j1): some inject faults into the guest's only link and device.
# Exit status: that of guest-suite.sh in the guest; 77 when the rig cannot run here;
# 124/125 when the guest timed out or the rig failed (run-guest.sh).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
RIG=${FERRY_RIG:-$SRC/tests/rig}
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
FILTER=
TIMEOUT=1200
RIG_OPTS=()
ENVS=()

while [ $# -gt 0 ]; do
	case "$1" in
	-b) BUILD=$2; shift ;;
	-f) FILTER=$2; shift ;;
	-t) TIMEOUT=$2; shift ;;
	-e) ENVS+=(-e "$2"); shift ;;
	--numa) RIG_OPTS+=(--nic-node1); ENVS+=(-e FERRY_RDMA_EXPECT_NODE=1) ;;
	--) shift; break ;;
	-h | --help)
		sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*) echo "run-in-rig: unknown option $1" >&2; exit 64 ;;
	esac
	shift
done

BUILD=$(cd "$BUILD" 2>/dev/null && pwd -P) || { echo "run-in-rig: no build directory" >&2; exit 64; }
TESTS="$BUILD/tests/ferry-tests"
[ -x "$TESTS" ] || { echo "run-in-rig: $TESTS not built" >&2; exit 64; }
if [ ! -x "$RIG/run-guest.sh" ]; then
	echo "run-in-rig: no soft-RoCE rig at $RIG (set FERRY_RIG)" >&2
	exit 77
fi

"$RIG/run-guest.sh" -t "$TIMEOUT" -m 1536 -s 2 ${RIG_OPTS[@]+"${RIG_OPTS[@]}"} \
	-e "FERRY_TEST_LOG=${FERRY_TEST_LOG:-1}" ${ENVS[@]+"${ENVS[@]}"} -- \
	"$HERE/guest-suite.sh" "$TESTS" "$FILTER"
