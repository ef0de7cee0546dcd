#!/bin/sh
# Guest side of run-in-rig.sh: runs the RDMA suites inside a soft-RoCE guest.
#
# Usage: guest-suite.sh FERRY_TESTS [FILTER]
#   With a FILTER: that filter, one test at a time. Without: every rdma suite but the
#   fault injection, then the fault suite on its own (it takes the link down and
#   removes the device), then a check that the removal it started finished once the
#   test process was gone (librdmacm holds a device until its process exits).
# Exit status: 0 when every phase passed.
set -u
T=$1
FILTER=${2:-}
OUT=$(mktemp /tmp/guest-suite.XXXXXX)
trap 'rm -f "$OUT"' EXIT
# --verbose also lists every test the filter leaves out ("disabled"): keep the rest.
run() {
	echo "=== guest-suite: ferry-tests --filter '$1'"
	"$T" --filter "$1" -j1 --verbose >"$OUT" 2>&1
	st=$?
	grep -v -e ': Test is disabled$' -e '^\[====\] Running [0-9]* tests\{0,1\} from [a-z_]*:$' "$OUT"
	return $st
}

if [ -n "$FILTER" ]; then
	run "$FILTER"
	exit $?
fi

rc=0
run 'rdma_!(fault)/*' || rc=1
# "link rxe0/1 state ACTIVE ...": the device the fault suite removes.
DEV=$(rdma link show 2>/dev/null | awk '$1 == "link" { sub("/.*", "", $2); print $2; exit }')
run 'rdma_fault/*' || rc=1
if [ -n "$DEV" ]; then
	n=0
	while rdma link show 2>/dev/null | grep -q "link $DEV/"; do
		n=$((n + 1))
		if [ $n -ge 150 ]; then
			echo "guest-suite: FAIL: $DEV still present 15 s after the removal test exited"
			rc=1
			break
		fi
		sleep 0.1
	done
	[ $n -lt 150 ] && echo "guest-suite: $DEV removal completed once the test process exited"
fi
exit $rc
