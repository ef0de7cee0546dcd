#!/bin/sh
# Guest side of run-in-rig.sh: runs the RDMA suites inside a soft-RoCE guest.
#
# Usage: guest-suite.sh FERRY_TESTS [FILTER]
#   With a FILTER: that filter, one test at a time. Without: every rdma suite but the
#   fault injection, then the rdma rows of the fault matrix (engine_faults/rdma) and the
#   userfaultfd dirty log suite (on the guest's Debian kernel), then rdma_failover on its own (it removes the device under a
#   migration; the device is added back once the removal completed), then the fault
#   suite on its own (it takes the link down and removes the device), then a check that
#   the removal it started finished once the test process was gone (librdmacm holds a
#   device until its process exits).
# Exit status: 0 when every phase passed.
set -u
T=$1
FILTER=${2:-}
ST=$(mktemp /tmp/guest-suite.XXXXXX)
trap 'rm -f "$ST"' EXIT
# --verbose also lists every test the filter leaves out ("disabled"): keep the rest.
# The output streams (a rig timeout still shows how far the run got); the runner's
# exit status comes back through $ST, as sh has no PIPESTATUS.
run() {
	echo "=== guest-suite: ferry-tests --filter '$1'"
	{
		"$T" --filter "$1" -j1 --verbose 2>&1
		echo $? >"$ST"
	} | grep --line-buffered -v -e ': Test is disabled$' \
		-e '^\[====\] Running [0-9]* tests\{0,1\} from [a-z_]*:$'
	return "$(cat "$ST")"
}

# FERRY_RIG_STACKS=SEC: SEC seconds into a filtered run, print the stack of every thread
# of every ferry-tests process still running (Criterion's runner and the test's child).
stacks_after() {
	sleep "$1"
	for pid in $(pgrep -x "$(basename "$T" | cut -c1-15)"); do
		echo "=== guest-suite: stacks of $pid after $1 s"
		gdb -p "$pid" -batch -nx -ex 'set pagination off' -ex 'thread apply all bt' 2>&1 |
			grep -e '^Thread' -e '^#'
	done
}

if [ -n "$FILTER" ]; then
	SPID=
	if [ -n "${FERRY_RIG_STACKS:-}" ] && command -v gdb >/dev/null; then
		stacks_after "$FERRY_RIG_STACKS" &
		SPID=$!
	fi
	run "$FILTER"
	st=$?
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	exit $st
fi

# Wait (15 s at most) until the removal of $DEV a test started has completed (librdmacm
# holds a device until its process exits).
wait_removed() {
	n=0
	while rdma link show 2>/dev/null | grep -q "link $1/"; do
		n=$((n + 1))
		if [ $n -ge 150 ]; then
			echo "guest-suite: FAIL: $1 still present 15 s after the removal test exited"
			return 1
		fi
		sleep 0.1
	done
	echo "guest-suite: $1 removal completed once the test process exited"
}

rc=0
run 'rdma_!(fault|failover)/*' || rc=1
# The fault matrix's rdma rows (main stream proxied, pages by RDMA), while the device is whole.
run 'engine_faults/rdma' || rc=1
# The userfaultfd dirty log on Debian 12's kernel (6.1: the synchronous mode only; the
# host's newer kernel mostly runs the asynchronous one).
run 'engine_dirty_uffd/*' || rc=1
# "link rxe0/1 state ACTIVE ...": the device the fault suites remove.
DEV=$(rdma link show 2>/dev/null | awk '$1 == "link" { sub("/.*", "", $2); print $2; exit }')
NETDEV=$(rdma link show 2>/dev/null | awk '$1 == "link" { for (i = 1; i < NF; i++) if ($i == "netdev") { print $(i + 1); exit } }')
# The engine moving to TCP lanes when the device goes mid-migration; then the device back.
run 'rdma_failover/*' || rc=1
if [ -n "$DEV" ] && [ -n "$NETDEV" ]; then
	wait_removed "$DEV" || rc=1
	rdma link show 2>/dev/null | grep -q "link $DEV/" ||
		rdma link add "$DEV" type rxe netdev "$NETDEV" || rc=1
	n=0
	until rdma link show 2>/dev/null | grep -q "link $DEV/.*state ACTIVE"; do
		n=$((n + 1))
		[ $n -ge 100 ] && { echo "guest-suite: FAIL: $DEV not active again"; rc=1; break; }
		sleep 0.1
	done
fi
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
