#!/bin/bash
# Boot two soft-RoCE guests on one private link and run one command in each.
#
# Usage: tests/rig/run-two-guests.sh [options] -- A-command [args...] --- B-command [args...]
#
# Guest A is 192.0.2.1 (MAC 52:54:00:00:02:01), guest B is 192.0.2.2 (52:54:00:00:02:02);
# distinct MACs matter because rxe derives its node GUID from the MAC. The two NICs are
# joined by a pair of unix datagram sockets (QEMU -netdev dgram): no TCP port, no start
# order, nothing leaves the host. Each guest has rxe0 on eth0 (MTU 4200). Both commands
# start after a two-sided barrier (A listens on TCP port 48999, B connects, bounded by
# --peer-wait), so both guests are fully set up when either command starts. A is meant to
# be the server; a client in B should still retry its first connection (the server may
# not be listening yet). Each command sees RIG_ROLE (a or b), RIG_IP and RIG_PEER_IP.
#
# Options (for both guests unless said):
#   -m, --mem MIB        guest RAM each (default 1024)
#   -s, --smp N          vCPUs each (default 1: two guests share the host's cores)
#   -t, --timeout SEC    bound on each guest's whole run (default 300)
#   --mtu N              eth0 MTU (default 4200)
#   --peer-wait SEC      bound on the start barrier (default 120)
#   --no-rdma            guests without rxe0
#   -e, --env NAME=VAL   exported to both commands (repeatable)
#   --out-dir DIR        keep results in DIR/a and DIR/b (see run-guest.sh --out-dir)
#   -q, --quiet          no summary lines
#   -v, --verbose        print the QEMU command lines
#
# Prints A's output, then B's, each under a "--- guest X ..." header. Exit status: 0 when
# both commands exited 0; 77 when the rig cannot run here; otherwise A's status if it is
# nonzero, else B's. The last line on stderr gives both ("rig2: A rc=.. B rc=..").
# When one guest fails as a rig (77, 124, 125) the other is stopped at once.
set -u -o pipefail

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

MEM=1024
SMP=1
TIMEOUT=300
MTU=4200
PEER_WAIT=120
COMMON=()
OUT_DIR=
QUIET=0

msg() { echo "rig2: $*" >&2; }
usage_err() {
	msg "$*"
	msg "usage: $0 [options] -- A-command... --- B-command...  (see the header of this script)"
	exit 125
}
need_arg() { [ $# -ge 2 ] || usage_err "option $1 needs an argument"; }

while [ $# -gt 0 ]; do
	case "$1" in
	-m | --mem) need_arg "$@"; MEM=$2; shift ;;
	-s | --smp) need_arg "$@"; SMP=$2; shift ;;
	-t | --timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
	--mtu) need_arg "$@"; MTU=$2; shift ;;
	--peer-wait) need_arg "$@"; PEER_WAIT=$2; shift ;;
	--no-rdma) COMMON+=(--no-rdma) ;;
	-e | --env) need_arg "$@"; COMMON+=(-e "$2"); shift ;;
	--out-dir) need_arg "$@"; OUT_DIR=$2; shift ;;
	-q | --quiet) QUIET=1 ;;
	-v | --verbose) COMMON+=(-v) ;;
	-h | --help)
		sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	--) shift; break ;;
	*) usage_err "unknown option $1" ;;
	esac
	shift
done
CMD_A=()
while [ $# -gt 0 ] && [ "$1" != "---" ]; do
	CMD_A+=("$1")
	shift
done
[ $# -gt 0 ] || usage_err "no '---' between the two commands"
shift
CMD_B=("$@")
[ ${#CMD_A[@]} -ge 1 ] && [ ${#CMD_B[@]} -ge 1 ] || usage_err "both commands are needed"

# Prepare once here if nothing is cached yet, so the two guests do not both wait for it.
if [ ! -f "${FERRY_RIG_CACHE:-/var/cache/ferry-rig}/current/.complete" ] &&
	! "$RIG_DIR/setup.sh" --quiet >/dev/null; then
	msg "cannot run the rig (setup.sh failed)"
	exit 77
fi

D=$(mktemp -d /tmp/ferry-rig2.XXXXXX) || exit 77
if [ -n "$OUT_DIR" ]; then
	mkdir -p "$OUT_DIR" || usage_err "cannot create $OUT_DIR"
	OUT=$(cd "$OUT_DIR" && pwd -P)
else
	OUT="$D"
fi
mkdir -p "$OUT/a" "$OUT/b"

PA=
PB=
cleanup() {
	# Each run-guest.sh kills its own QEMU when it gets TERM (and QEMU has a parent-death
	# signal in case it does not).
	[ -n "$PA" ] && kill -TERM "$PA" 2>/dev/null
	[ -n "$PB" ] && kill -TERM "$PB" 2>/dev/null
	[ -n "$PA" ] && wait "$PA" 2>/dev/null
	[ -n "$PB" ] && wait "$PB" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'msg "interrupted"; exit 130' INT
trap 'msg "terminated"; exit 143' TERM HUP

# Unix socket paths are limited to 107 bytes: keep them in the short /tmp directory.
SA="$D/a.sock"
SB="$D/b.sock"
netdev() { echo "dgram,local.type=unix,local.path=$1,remote.type=unix,remote.path=$2"; }
GUEST_OPTS=(-m "$MEM" -s "$SMP" -t "$TIMEOUT" --mtu "$MTU" --no-print ${COMMON[@]+"${COMMON[@]}"})

now() { date +%s.%N; }
T0=$(now)
"$RIG_DIR/run-guest.sh" "${GUEST_OPTS[@]}" --ip 192.0.2.1 --mac 52:54:00:00:02:01 \
	--netdev "$(netdev "$SA" "$SB")" --peer 192.0.2.2 --peer-wait "$PEER_WAIT" --barrier listen -e RIG_ROLE=a \
	--out-dir "$OUT/a" -- "${CMD_A[@]}" 2>"$OUT/a/rig.log" &
PA=$!
"$RIG_DIR/run-guest.sh" "${GUEST_OPTS[@]}" --ip 192.0.2.2 --mac 52:54:00:00:02:02 \
	--netdev "$(netdev "$SB" "$SA")" --peer 192.0.2.1 --peer-wait "$PEER_WAIT" --barrier connect -e RIG_ROLE=b \
	--out-dir "$OUT/b" -- "${CMD_B[@]}" 2>"$OUT/b/rig.log" &
PB=$!

RCA=
RCB=
TA=
TB=
rig_failure() { [ "$1" = 77 ] || [ "$1" = 124 ] || [ "$1" = 125 ]; }
while [ -z "$RCA" ] || [ -z "$RCB" ]; do
	DONE=
	wait -n -p DONE ${PA:+"$PA"} ${PB:+"$PB"}
	ST=$?
	[ -n "$DONE" ] || continue
	if [ "$DONE" = "$PA" ]; then
		RCA=$ST PA="" TA=$(now)
		if rig_failure "$RCA" && [ -n "$PB" ]; then
			msg "guest A failed as a rig (rc $RCA): stopping guest B"
			kill -TERM "$PB" 2>/dev/null
		fi
	else
		RCB=$ST PB="" TB=$(now)
		if rig_failure "$RCB" && [ -n "$PA" ]; then
			msg "guest B failed as a rig (rc $RCB): stopping guest A"
			kill -TERM "$PA" 2>/dev/null
		fi
	fi
done
T1=$(now)

show() {
	local g=$1 rc=$2 ip=$3
	echo "--- guest $g ($ip) rc=$rc stdout ---"
	cat "$OUT/$g/stdout" 2>/dev/null
	{
		echo "--- guest $g ($ip) rc=$rc stderr ---"
		cat "$OUT/$g/stderr" 2>/dev/null
		# run-guest.sh's own messages: failures, console tail, summary.
		cat "$OUT/$g/rig.log" 2>/dev/null
	} >&2
}
show a "$RCA" 192.0.2.1
show b "$RCB" 192.0.2.2

if [ "$QUIET" = 0 ]; then
	msg "A rc=$RCA B rc=$RCB wall=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')s" \
		"(A done at $(awk -v a="$T0" -v b="$TA" 'BEGIN { printf "%.2f", b - a }')s," \
		"B at $(awk -v a="$T0" -v b="$TB" 'BEGIN { printf "%.2f", b - a }')s) [smp=$SMP mem=${MEM}M each]"
fi
if [ "$RCA" = 0 ] && [ "$RCB" = 0 ]; then
	exit 0
fi
[ "$RCA" = 77 ] || [ "$RCB" = 77 ] && exit 77
[ "$RCA" != 0 ] && exit "$RCA"
exit "$RCB"
