# Guest side of run-guest.sh: sourced (POSIX sh, in the guest's chroot of the host root)
# by the job script that run-guest.sh writes. Not meant to run on the host.
#
# The job script sets, before sourcing this file:
#   RIG_IP RIG_MTU RIG_RDMA(0/1) RIG_PEER_IP RIG_PEER_WAIT RIG_BARRIER RIG_CWD RIG_OUT
# and then calls: rig_job_main command [args...]
#
# Results go to $RIG_OUT (the writable 9p share "out"):
#   stdout, stderr  the command's output
#   rc              the command's exit status (written only when the command ran)
#   setup-error     why the guest could not get to the command (then exit 125)
#   times           guest uptimes: init modules-loaded setup-start command-start command-end

rig_uptime() { cut -d' ' -f1 /proc/uptime; }

rig_setup_fail() {
	dmesg >"$RIG_OUT/dmesg" 2>/dev/null
	echo "$*" >"$RIG_OUT/setup-error" 2>/dev/null
	echo "rig-guest: $*" >&2
	exit 125
}

# Poll a shell condition every 0.1 s for at most $1 seconds.
rig_wait_for() {
	_limit=$1
	shift
	_n=0
	while ! eval "$*"; do
		_n=$((_n + 1))
		[ $_n -ge $((_limit * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

rig_net_setup() {
	ip link set lo up || rig_setup_fail "ip link set lo up failed"
	ip link set eth0 up || rig_setup_fail "no eth0 in the guest"
	if [ -n "$RIG_MTU" ]; then
		ip link set eth0 mtu "$RIG_MTU" || rig_setup_fail "cannot set eth0 mtu $RIG_MTU"
	fi
	ip addr add "$RIG_IP/24" dev eth0 || rig_setup_fail "cannot add $RIG_IP to eth0"
}

rig_rdma_setup() {
	# rdma_rxe needs crc32 from the crypto API; init loaded crc32_generic for that.
	rdma link add rxe0 type rxe netdev eth0 ||
		rig_setup_fail "rdma link add rxe0 failed (is crc32_generic loaded? see dmesg)"
	rig_wait_for 10 'grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null' ||
		rig_setup_fail "rxe0 port 1 not ACTIVE after 10 s"
	# The IPv4-mapped GID (index 1) that rdma_cm and perftest use appears shortly after.
	rig_wait_for 10 'grep -q "ffff:" /sys/class/infiniband/rxe0/ports/1/gids/1 2>/dev/null' ||
		rig_setup_fail "rxe0 has no IPv4 GID after 10 s"
}

# Port of the start barrier between two guests (nothing else in a guest listens there).
RIG_BARRIER_PORT=48999

# Wait for the peer before the command, bounded by RIG_PEER_WAIT seconds:
#   RIG_BARRIER=ping     until the peer answers ping (it is up; it may not stay up)
#   RIG_BARRIER=listen   until the peer connects to our barrier port
#   RIG_BARRIER=connect  until a connection to the peer's barrier port succeeds
# listen/connect make a two-sided barrier: both commands start only once both guests
# have finished their setup, so a short command on one side cannot end (and power its
# guest off) before the other side has seen it.
rig_wait_peer() {
	[ -n "$RIG_PEER_IP" ] && [ "$RIG_PEER_WAIT" -gt 0 ] || return 0
	_deadline=$(($(cut -d. -f1 /proc/uptime) + RIG_PEER_WAIT))
	case "$RIG_BARRIER" in
	listen)
		timeout "$RIG_PEER_WAIT" busybox nc -l -p $RIG_BARRIER_PORT </dev/null >/dev/null 2>&1 ||
			rig_setup_fail "peer $RIG_PEER_IP did not reach the barrier within ${RIG_PEER_WAIT}s"
		return 0
		;;
	connect)
		set -- busybox nc -w 1 "$RIG_PEER_IP" $RIG_BARRIER_PORT
		;;
	*)
		set -- busybox ping -q -c1 -W1 "$RIG_PEER_IP"
		;;
	esac
	until "$@" </dev/null >/dev/null 2>&1; do
		[ "$(cut -d. -f1 /proc/uptime)" -lt "$_deadline" ] ||
			rig_setup_fail "peer $RIG_PEER_IP not reachable within ${RIG_PEER_WAIT}s ($RIG_BARRIER)"
		sleep 0.2
	done
}

rig_job_main() {
	_t_setup=$(rig_uptime)
	rig_net_setup
	[ "$RIG_RDMA" = 1 ] && rig_rdma_setup
	rig_wait_peer
	# The kernel default (8 MiB) is too small for real registrations by non-root users.
	# shellcheck disable=SC3045 # dash and busybox sh have ulimit -l
	ulimit -l unlimited 2>/dev/null
	cd "$RIG_CWD" || rig_setup_fail "working directory $RIG_CWD not visible in the guest"
	_t_cmd=$(rig_uptime)
	"$@" >"$RIG_OUT/stdout" 2>"$RIG_OUT/stderr" </dev/null
	_rc=$?
	_t_end=$(rig_uptime)
	echo "$(cat /run/rig-init-times 2>/dev/null) $_t_setup $_t_cmd $_t_end" >"$RIG_OUT/times"
	echo "$_rc" >"$RIG_OUT/rc"
	exit $_rc
}
