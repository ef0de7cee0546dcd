#!/bin/busybox sh
# /init of the rig's initramfs (busybox). Copied in by setup.sh; not run on the host.
#
# Loads the modules listed in /modules.base (and /modules.rdma unless rig.nordma=1),
# mounts the host root (9p tag "hostroot", read-only) under a tmpfs overlay at /newroot,
# mounts the writable 9p tag "out" at /newroot/rig-out, runs the job script named by
# rig.job= in a chroot, and hands its exit status to QEMU through isa-debug-exit
# (port 0xf4): QEMU then exits with (status << 1) | 1.
#
# Status 125 written by this script means the rig itself failed (a module, a mount);
# the host tells it apart from a job's 125 because only a finished job writes rig-out/rc.

/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1

T_INIT=$(cut -d' ' -f1 /proc/uptime)

finish() {
	rc=$1
	sync
	# One byte to the isa-debug-exit port; QEMU exits at once.
	printf "\\$(printf %03o "$rc")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	# No debug-exit device (or it failed): power off; the host sees no rc file.
	poweroff -f
	sleep 60
}

fail() {
	echo "rig-init: $*"
	[ -d /newroot/rig-out ] && echo "$*" >/newroot/rig-out/init-error 2>/dev/null
	finish 125
}

JOB=
NORDMA=0
P9CACHE=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	rig.job=*) JOB=${arg#rig.job=} ;;
	rig.nordma=1) NORDMA=1 ;;
	rig.p9cache=*) P9CACHE=",cache=${arg#rig.p9cache=}" ;;
	esac
done

load_list() {
	for m in $(cat "$1"); do
		insmod "/lib/modules/$m" || fail "insmod $m failed"
	done
}
load_list /modules.base
[ "$NORDMA" = 1 ] || load_list /modules.rdma
T_MODS=$(cut -d' ' -f1 /proc/uptime)

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro$P9CACHE hostroot /mnt ||
	fail "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=755 ovl /ovl || fail "tmpfs for the overlay"
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/mnt,upperdir=/ovl/upper,workdir=/ovl/work /newroot ||
	fail "overlay mount failed"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
# /run of the host means nothing here; /tmp is left alone on purpose: the host's /tmp
# (where run-guest.sh puts the job) must stay visible through the overlay.
mount -t tmpfs -o mode=755 run /newroot/run
mkdir -p /newroot/rig-out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot/rig-out ||
	echo "rig-init: no writable 9p share 'out'; results only through the exit status"
echo "$T_INIT $T_MODS" >/newroot/run/rig-init-times

[ -n "$JOB" ] || fail "no rig.job= on the kernel command line"
[ -f "/newroot$JOB" ] || fail "job script $JOB not visible in the guest"

HOME=/root TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	chroot /newroot /bin/sh "$JOB"
finish $?
