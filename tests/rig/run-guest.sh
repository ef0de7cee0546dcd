#!/bin/bash
# Boot one soft-RoCE guest (QEMU, TCG) and run one command in it.
#
# Usage: tests/rig/run-guest.sh [options] -- command [args...]
#
# The guest runs Debian's kernel with the host's root read-only over 9p (a tmpfs overlay
# makes it writable, writes are lost), so `command` is any host path, run as root in the
# caller's working directory (the same host path). eth0 gets 192.0.2.15/24, MTU 4200, and
# rxe0 (rdma_rxe) on top of it. The command's stdout and stderr are captured in the guest
# into a writable 9p share and printed here after the guest exits.
#
# Options:
#   -m, --mem MIB        guest RAM (default 1024, or $FERRY_RIG_MEM)
#   -s, --smp N          vCPUs (default 2, or $FERRY_RIG_SMP)
#   -t, --timeout SEC    bound on the whole run, boot included (default 300, or
#                        $FERRY_RIG_TIMEOUT); QEMU is killed by its PID when it expires
#   --numa               two NUMA nodes, RAM and vCPUs split between them (smp >= 2)
#   --nic-node1          put the NIC (so eth0/rxe0) behind a PCI expander bridge on node 1
#                        (implies --numa)
#   --no-rdma            no RDMA modules, no rxe0: verbs fail as on the host (fallback tests)
#   --mtu N              eth0 MTU (default 4200: rxe active_mtu 4096); 0 leaves 1500
#   --ip ADDR            guest IPv4 address in 192.0.2.0/24 (default 192.0.2.15)
#   --mac MAC            NIC MAC (default 52:54:00:00:02:0f); rxe's GUID derives from it
#   --netdev SPEC        QEMU -netdev backend instead of the isolated user network, without
#                        id= (e.g. "dgram,local.type=unix,..."; used by run-two-guests.sh)
#   --peer IP            before the command, wait until IP answers ping (bounded); the
#                        command sees it as RIG_PEER_IP
#   --peer-wait SEC      bound for --peer (default 60; 0: do not wait, just export it)
#   --barrier KIND       how --peer waits: ping (default: until the peer answers ping),
#                        listen or connect (a two-sided start barrier over TCP port 48999:
#                        one guest listens, the other connects; run-two-guests.sh uses it)
#   -e, --env NAME=VAL   export NAME=VAL to the command (repeatable)
#   --out-dir DIR        keep the results in DIR (stdout, stderr, rc, times, console.log,
#                        and whatever the command writes to $RIG_OUT); default: a temp dir
#                        that is removed
#   --no-print           do not print the command's stdout/stderr after the run
#   --console            print the guest console log to stderr after the run
#   --bzimage            boot the compressed bzImage even if a PVH vmlinux is cached
#   --tb-size MIB        TCG translation cache size
#   --append ARGS        extra kernel command-line arguments
#   -q, --quiet          no summary line on stderr
#   -v, --verbose        print the QEMU command line
#
# In the guest the command sees RIG_IP, RIG_PEER_IP, RIG_OUT (a directory whose files end
# up in --out-dir) and RIG_RDMA (1 or 0).
#
# Environment: FERRY_RIG_CACHE (the cache setup.sh fills, default /var/cache/ferry-rig),
# FERRY_RIG_MEM, FERRY_RIG_SMP, FERRY_RIG_TIMEOUT (defaults of -m, -s, -t), and
# FERRY_RIG_P9CACHE (a 9p cache= mode for the host root, e.g. loose; default none).
#
# Exit status: the command's own exit status; 77 when the rig cannot run here (no QEMU,
# no guest kernel obtainable; the reason is on stderr); 124 when the timeout expired;
# 125 when the rig failed (QEMU error, guest setup failed, the guest died without
# reporting); the reason and the console tail are printed on stderr.
set -u -o pipefail

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FERRY_RIG_CACHE:-/var/cache/ferry-rig}

MEM=${FERRY_RIG_MEM:-1024}
SMP=${FERRY_RIG_SMP:-2}
TIMEOUT=${FERRY_RIG_TIMEOUT:-300}
NUMA=0
NIC_NODE1=0
RDMA=1
MTU=4200
IP=192.0.2.15
MAC=52:54:00:00:02:0f
NETDEV=
PEER=
PEER_WAIT=60
BARRIER=ping
ENVS=()
OUT_DIR=
PRINT=1
CONSOLE=0
BZIMAGE=0
TB_SIZE=
EXTRA_APPEND=
QUIET=0
VERBOSE=0

msg() { echo "rig: $*" >&2; }
skip() {
	msg "cannot run the rig: $*"
	exit 77
}
usage_err() {
	msg "$*"
	msg "usage: $0 [options] -- command [args...]  (see the header of this script)"
	exit 125
}

need_arg() { [ $# -ge 2 ] || usage_err "option $1 needs an argument"; }

while [ $# -gt 0 ]; do
	case "$1" in
	-m | --mem) need_arg "$@"; MEM=$2; shift ;;
	-s | --smp) need_arg "$@"; SMP=$2; shift ;;
	-t | --timeout) need_arg "$@"; TIMEOUT=$2; shift ;;
	--numa) NUMA=1 ;;
	--nic-node1) NUMA=1; NIC_NODE1=1 ;;
	--no-rdma) RDMA=0 ;;
	--mtu) need_arg "$@"; MTU=$2; shift ;;
	--ip) need_arg "$@"; IP=$2; shift ;;
	--mac) need_arg "$@"; MAC=$2; shift ;;
	--netdev) need_arg "$@"; NETDEV=$2; shift ;;
	--peer) need_arg "$@"; PEER=$2; shift ;;
	--peer-wait) need_arg "$@"; PEER_WAIT=$2; shift ;;
	--barrier) need_arg "$@"; BARRIER=$2; shift ;;
	-e | --env) need_arg "$@"; ENVS+=("$2"); shift ;;
	--out-dir) need_arg "$@"; OUT_DIR=$2; shift ;;
	--no-print) PRINT=0 ;;
	--console) CONSOLE=1 ;;
	--bzimage) BZIMAGE=1 ;;
	--tb-size) need_arg "$@"; TB_SIZE=$2; shift ;;
	--append) need_arg "$@"; EXTRA_APPEND=$2; shift ;;
	-q | --quiet) QUIET=1 ;;
	-v | --verbose) VERBOSE=1 ;;
	-h | --help)
		sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	--) shift; break ;;
	*) usage_err "unknown option $1" ;;
	esac
	shift
done
[ $# -ge 1 ] || usage_err "no command given"

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_uint "$MEM" && [ "$MEM" -ge 256 ] || usage_err "--mem must be a number of MiB >= 256"
is_uint "$SMP" && [ "$SMP" -ge 1 ] || usage_err "--smp must be >= 1"
is_uint "$TIMEOUT" && [ "$TIMEOUT" -ge 1 ] || usage_err "--timeout must be seconds >= 1"
is_uint "$MTU" || usage_err "--mtu must be a number"
is_uint "$PEER_WAIT" || usage_err "--peer-wait must be seconds"
[[ "$BARRIER" =~ ^(ping|listen|connect)$ ]] || usage_err "--barrier is ping, listen or connect"
[[ "$IP" =~ ^192\.0\.2\.[0-9]+$ ]] || usage_err "--ip must be in 192.0.2.0/24"
[[ "$MAC" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || usage_err "bad --mac $MAC"
if [ "$NUMA" = 1 ]; then
	[ "$SMP" -ge 2 ] || usage_err "--numa needs --smp 2 or more"
	[ $((MEM % 2)) = 0 ] || usage_err "--numa needs an even --mem"
fi
for e in ${ENVS[@]+"${ENVS[@]}"}; do
	[[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_err "bad --env '$e' (NAME=VALUE)"
done

# ---------------------------------------------------------------- the rig's parts
QEMU=$(command -v qemu-system-x86_64 || true)
kernel_ready() { [ -f "$1/.complete" ] && [ -f "$1/initrd.cpio" ] && [ -f "$1/vmlinuz" ]; }
# Same key as setup.sh's initrd_key: the initramfs was built from this guest-init.sh.
init_current() {
	[ "$(cat "$1/initrd.key" 2>/dev/null)" = \
		"$(cat "$RIG_DIR/guest-init.sh" /bin/busybox 2>/dev/null | sha256sum | cut -d' ' -f1)" ]
}
# The cached kernel is used as it is (no apt look-up on every run); setup.sh builds it the
# first time, rebuilds it when guest-init.sh changed, and refreshes it when run by hand.
KDIR="$CACHE/current"
if [ -z "$QEMU" ] || ! kernel_ready "$KDIR" || ! init_current "$KDIR"; then
	KDIR=$("$RIG_DIR/setup.sh" --quiet) || skip "tests/rig/setup.sh failed (see above)"
	QEMU=$(command -v qemu-system-x86_64) || skip "qemu-system-x86_64 not installed"
fi
KDIR=$(cd "$KDIR" && pwd -P)
if [ "$BZIMAGE" = 0 ] && [ -f "$KDIR/vmlinux" ]; then
	KERNEL="$KDIR/vmlinux"
	BOOT=pvh
else
	KERNEL="$KDIR/vmlinuz"
	BOOT=bzimage
fi

# ---------------------------------------------------------------- the run directory
# Under /tmp (visible to the guest through the 9p root) unless --out-dir names one.
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ferry-rig.XXXXXX") || skip "mktemp failed"
if [ -n "$OUT_DIR" ]; then
	mkdir -p "$OUT_DIR" || usage_err "cannot create --out-dir $OUT_DIR"
	OUT=$(cd "$OUT_DIR" && pwd -P)
	rm -f "$OUT"/{stdout,stderr,rc,times,setup-error,init-error,dmesg,console.log}
else
	OUT="$RUN/out"
	mkdir -p "$OUT"
fi
chmod 777 "$OUT" 2>/dev/null || true

QPID=
SPID=
cleanup() {
	[ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'msg "interrupted"; exit 130' INT
trap 'msg "terminated"; exit 143' TERM HUP

# Single-quote a word for the guest's /bin/sh.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

CWD=$(pwd -P)
{
	echo "# written by run-guest.sh; run by the guest's /init under chroot"
	echo "RIG_IP=$(shq "$IP") RIG_MTU=$([ "$MTU" = 0 ] || shq "$MTU") RIG_RDMA=$RDMA"
	echo "RIG_PEER_IP=$(shq "$PEER") RIG_PEER_WAIT=$PEER_WAIT RIG_BARRIER=$BARRIER"
	echo "RIG_CWD=$(shq "$CWD") RIG_OUT=/rig-out"
	echo "export RIG_IP RIG_PEER_IP RIG_OUT RIG_RDMA"
	for e in ${ENVS[@]+"${ENVS[@]}"}; do
		echo "export ${e%%=*}=$(shq "${e#*=}")"
	done
	echo ". $(shq "$RIG_DIR/guest-job.sh")"
	printf 'rig_job_main'
	for a in "$@"; do printf ' %s' "$(shq "$a")"; done
	echo
} >"$RUN/job.sh"

# ---------------------------------------------------------------- QEMU
qcomma() { printf '%s' "${1//,/,,}"; } # a comma in a QEMU option value is doubled

APPEND="console=ttyS0 quiet panic=-1 rig.job=$RUN/job.sh"
[ "$RDMA" = 0 ] && APPEND="$APPEND rig.nordma=1"
[ -n "${FERRY_RIG_P9CACHE:-}" ] && APPEND="$APPEND rig.p9cache=$FERRY_RIG_P9CACHE"
[ -n "$EXTRA_APPEND" ] && APPEND="$APPEND $EXTRA_APPEND"
[[ "$RUN" != *" "* ]] || skip "the run directory path has a space: $RUN"

ACCEL="tcg,thread=multi"
[ -n "$TB_SIZE" ] && ACCEL="$ACCEL,tb-size=$TB_SIZE"
# shellcheck disable=SC2054 # commas belong to QEMU option values
Q=("$QEMU" -nodefaults -no-user-config -display none -no-reboot
	-accel "$ACCEL" -cpu max -m "$MEM" -smp "$SMP"
	-kernel "$KERNEL" -initrd "$KDIR/initrd.cpio" -append "$APPEND"
	-serial "file:$(qcomma "$OUT/console.log")"
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
	-virtfs "local,path=$(qcomma "$OUT"),mount_tag=out,security_model=none"
	-device isa-debug-exit,iobase=0xf4,iosize=0x04)
if [ "$NUMA" = 1 ]; then
	half=$((MEM / 2))
	n0=$((SMP / 2))
	cpus0="0"
	[ "$n0" -gt 1 ] && cpus0="0-$((n0 - 1))"
	cpus1="$n0"
	[ "$SMP" -gt $((n0 + 1)) ] && cpus1="$n0-$((SMP - 1))"
	Q+=(-object "memory-backend-ram,id=m0,size=${half}M"
		-object "memory-backend-ram,id=m1,size=${half}M"
		-numa "node,nodeid=0,cpus=$cpus0,memdev=m0"
		-numa "node,nodeid=1,cpus=$cpus1,memdev=m1")
fi
if [ -n "$NETDEV" ]; then
	Q+=(-netdev "$NETDEV,id=n0")
else
	# restrict=on: the guest reaches nothing outside its own user-mode network.
	Q+=(-netdev "user,id=n0,restrict=on,net=192.0.2.0/24")
fi
NIC="virtio-net-pci,netdev=n0,romfile=,mac=$MAC"
if [ "$NIC_NODE1" = 1 ]; then
	# The expander bridge must come before the NIC that sits on it.
	Q+=(-device "pxb,id=pxb1,bus_nr=32,numa_node=1,bus=pci.0")
	NIC="$NIC,bus=pxb1,addr=0x0"
fi
Q+=(-device "$NIC")

[ "$VERBOSE" = 1 ] && msg "$(printf '%q ' "${Q[@]}")"

now() { date +%s.%N; }
# setpriv --pdeathsig: QEMU also dies if this script is killed outright (SIGKILL skips the
# EXIT trap), so no guest outlives its run.
PDEATH=()
setpriv --pdeathsig KILL true 2>/dev/null && PDEATH=(setpriv --pdeathsig KILL)
T0=$(now)
${PDEATH[@]+"${PDEATH[@]}"} "${Q[@]}" </dev/null >"$RUN/qemu.out" 2>&1 &
QPID=$!
${PDEATH[@]+"${PDEATH[@]}"} sleep "$TIMEOUT" &
SPID=$!
TIMED_OUT=0
while :; do
	wait -n -p DONE "$QPID" "$SPID"
	ST=$?
	[ -n "${DONE:-}" ] && break # (wait -n returns early, with no pid, on a trapped signal)
done
if [ "$DONE" = "$SPID" ]; then
	SPID=
	TIMED_OUT=1
	kill -TERM "$QPID" 2>/dev/null
	for _ in $(seq 30); do
		kill -0 "$QPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	ST=
else
	kill "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	SPID=
fi
QPID=
T1=$(now)
WALL=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')

# ---------------------------------------------------------------- results
console_tail() {
	msg "--- last lines of the guest console ($OUT/console.log) ---"
	tail -n 25 "$OUT/console.log" 2>/dev/null | sed 's/^/rig:   /' >&2
	if [ -s "$RUN/qemu.out" ]; then
		msg "--- QEMU said ---"
		sed 's/^/rig:   /' "$RUN/qemu.out" >&2
	fi
}

RC=
WHY=
if [ "$TIMED_OUT" = 1 ]; then
	RC=124
	WHY="timeout: the run exceeded ${TIMEOUT}s; QEMU was killed"
elif [ -s "$OUT/rc" ]; then
	RC=$(cat "$OUT/rc")
	# Cross-check with isa-debug-exit: QEMU exits with ((rc << 1) | 1) & 0xff.
	if [ "$ST" != $((((RC << 1) | 1) & 255)) ]; then
		msg "warning: QEMU exit status $ST does not match the job's rc $RC"
	fi
elif [ -s "$OUT/setup-error" ]; then
	RC=125
	WHY="guest setup failed: $(cat "$OUT/setup-error")"
elif [ -s "$OUT/init-error" ]; then
	RC=125
	WHY="guest init failed: $(cat "$OUT/init-error")"
elif [ $((ST & 1)) = 1 ] && [ "$ST" -gt 1 ]; then
	RC=125
	WHY="the guest reported status $(((ST - 1) / 2)) but the job wrote no result"
elif [ "$ST" = 0 ]; then
	RC=125
	WHY="the guest stopped without reporting a status (panic or power-off)"
else
	RC=125
	WHY="QEMU failed (exit status $ST)"
fi

if [ "$PRINT" = 1 ]; then
	[ -f "$OUT/stdout" ] && cat "$OUT/stdout"
	[ -f "$OUT/stderr" ] && cat "$OUT/stderr" >&2
fi
[ "$CONSOLE" = 1 ] && [ -f "$OUT/console.log" ] && cat "$OUT/console.log" >&2
if [ -n "$WHY" ]; then
	msg "$WHY"
	console_tail
fi
if [ "$QUIET" = 0 ]; then
	# Guest uptimes: init, modules loaded, setup start, command start, command end.
	TIMES=$(awk 'NF == 5 { printf "kernel-to-init %.2fs, modules %.2fs, setup %.2fs, command %.2fs", $1, $2 - $1, $4 - $3, $5 - $4 }' \
		"$OUT/times" 2>/dev/null)
	msg "rc=$RC wall=${WALL}s${TIMES:+ ($TIMES)} [$BOOT smp=$SMP mem=${MEM}M$([ "$NUMA" = 1 ] && echo " numa")$([ "$RDMA" = 0 ] && echo " no-rdma") ip=$IP]"
fi
exit "$RC"
