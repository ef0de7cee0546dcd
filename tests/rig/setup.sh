#!/bin/bash
# Prepare the soft-RoCE test rig: host packages, a Debian guest kernel, an initramfs.
#
# Usage: tests/rig/setup.sh [--check] [--quiet] [--no-vmlinux]
#
# Idempotent. Everything it builds lives in one cache directory ($FERRY_RIG_CACHE,
# default /var/cache/ferry-rig), one subdirectory per guest kernel ABI:
#
#   <cache>/<kver>/vmlinuz      Debian's bzImage (plain -amd64 flavour)
#   <cache>/<kver>/vmlinux      the same kernel uncompressed, for PVH boot (optional)
#   <cache>/<kver>/modules/     the modules the guest loads, uncompressed, with load order
#   <cache>/<kver>/initrd.cpio  busybox, /init (guest-init.sh) and those modules; rebuilt
#                               alone when guest-init.sh or busybox changes
#   <cache>/<kver>/config       the kernel's config
#   <cache>/<kver>/manifest     package, version, sha256 of the .deb, module load order
#   <cache>/current -> <kver>   the last kernel that was built completely
#
# On success it prints the ready kernel directory on stdout (diagnostics go to stderr) and
# exits 0. A second run is a no-op apart from an `apt-cache` look-up. It exits 77 when the
# rig cannot be prepared (not root and something is missing, no kernel obtainable, ...).
#
# Only Debian's repositories are used, through apt-get; nothing else is downloaded.
# --check: install and download nothing; exit 0 with the path if a kernel is ready, else 77.
set -u -o pipefail

RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FERRY_RIG_CACHE:-/var/cache/ferry-rig}
CHECK=0
QUIET=0
WANT_VMLINUX=1

# Host packages. qemu for the guest, busybox-static + cpio + kmod for the initramfs,
# providers/utils/perftest for verbs in the guest (the guest runs the host's root
# read-only over 9p, so whatever the guest needs is installed on the host). Not
# rdma-core: the rig needs none of its daemons or udev rules, and it drags in udev and
# systemd-sysv (`rdma` comes from iproute2, the rxe provider from ibverbs-providers).
PACKAGES=(qemu-system-x86 busybox-static cpio kmod python3 gcc libc6-dev
	ibverbs-providers ibverbs-utils rdmacm-utils perftest
	libibverbs-dev librdmacm-dev iproute2 numactl hwloc util-linux coreutils)

# Modules the guest loads, top level; dependencies come from modules.dep.
# crc32_generic must be first: rdma_rxe asks the crypto API for "crc32" and fails to add
# a link without it (rdma link add: "No such file or directory").
BASE_MODULES=(crc32_generic virtio_pci virtio_net 9pnet_virtio 9p overlay)
RDMA_MODULES=(rdma_rxe ib_uverbs rdma_ucm)

log() { [ "$QUIET" = 1 ] || echo "rig-setup: $*" >&2; }
die_skip() {
	echo "rig-setup: cannot prepare the rig: $*" >&2
	exit 77
}

while [ $# -gt 0 ]; do
	case "$1" in
	--check) CHECK=1 ;;
	--quiet | -q) QUIET=1 ;;
	--no-vmlinux) WANT_VMLINUX=0 ;;
	-h | --help)
		sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die_skip "unknown option $1" ;;
	esac
	shift
done

# ---------------------------------------------------------------- host packages
missing_packages() {
	# One dpkg-query for all; a package dpkg never heard of is reported on stderr only.
	dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null |
		awk '$2 " " $3 " " $4 == "install ok installed" { print $1 }' |
		sort >"${TMPDIR:-/tmp}/rig-setup-have.$$"
	printf '%s\n' "${PACKAGES[@]}" | sort | comm -23 - "${TMPDIR:-/tmp}/rig-setup-have.$$"
	rm -f "${TMPDIR:-/tmp}/rig-setup-have.$$"
}

# apt/dpkg may be busy (another helper or CI step installing): wait for the lock.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

apt_update() {
	for _ in 1 2 3; do
		apt-get "${APT_OPTS[@]}" -qq update >&2 && return 0
		sleep 5
	done
	return 1
}

ensure_packages() {
	local missing
	missing=$(missing_packages)
	[ -z "$missing" ] && return 0
	[ "$CHECK" = 1 ] && die_skip "host packages missing: $(echo $missing)"
	[ "$(id -u)" = 0 ] || die_skip "host packages missing and not root: $(echo $missing)"
	log "installing:" $missing
	# Try without a list update first (lists may be fresh); update only if that fails.
	if ! DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" -qq install -y \
		--no-install-recommends $missing >&2; then
		log "install failed; running apt-get update once"
		apt_update || die_skip "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" -qq install -y \
			--no-install-recommends $missing >&2 ||
			die_skip "apt-get install failed for: $(echo $missing)"
	fi
}

# ---------------------------------------------------------------- kernel resolution
# Prints "<package> <version>" of the current plain -amd64 kernel ABI package, e.g.
# "linux-image-6.1.0-56-amd64 6.1.192-2". Debian removes an ABI package from the mirror
# when the next one arrives, so this is resolved each time rather than pinned.
resolve_kernel_pkg() {
	local dep pkg ver
	dep=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends: //p' | head -n1)
	# "linux-image-6.1.0-56-amd64 (= 6.1.192-2)": the meta package pins the exact version.
	read -r pkg ver < <(echo "$dep" | tr ',' '\n' |
		sed -n 's/^ *\(linux-image-[0-9][^ ]*-amd64\) *(= *\([^)]*\)).*/\1 \2/p' | head -n1)
	[ -n "${pkg:-}" ] || return 1
	if [ -z "${ver:-}" ]; then
		ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null |
			sed -n 's/^Version: //p' | head -n1)
	fi
	[ -n "$ver" ] || return 1
	echo "$pkg $ver"
}

ready() { [ -f "$1/.complete" ] && [ -f "$1/initrd.cpio" ] && [ -f "$1/vmlinuz" ]; }

# ---------------------------------------------------------------- build
# Resolve module dependencies from modules.dep and print the load order (one path relative
# to the modules directory per line), dependencies before their users, crc32_generic first.
module_order() {
	local moddir=$1
	shift
	python3 - "$moddir" "$@" <<'EOF'
import os, sys
moddir, wanted = sys.argv[1], sys.argv[2:]
deps, byname = {}, {}
with open(os.path.join(moddir, "modules.dep")) as f:
    for line in f:
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        name = os.path.basename(path).split(".ko")[0].replace("-", "_")
        byname[name] = path
order, seen = [], set()
def visit(p):
    if p in seen:
        return
    seen.add(p)
    # modules.dep lists the deepest dependency last: visit in reverse so that the
    # printed order loads every dependency before its user.
    for d in reversed(deps[p]):
        visit(d)
    order.append(p)
for w in wanted:
    name = w.replace("-", "_")
    if name not in byname:
        builtin = os.path.join(moddir, "modules.builtin")
        if os.path.exists(builtin) and any(
                os.path.basename(l.strip()).split(".ko")[0].replace("-", "_") == name
                for l in open(builtin)):
            continue
        sys.exit("module %s not found in modules.dep" % w)
    visit(byname[name])
print("\n".join(order))
EOF
}

# Uncompressed ELF vmlinux from a bzImage with an xz payload, so QEMU can boot it through
# the PVH entry point and skip the real-mode setup and in-guest decompression (seconds
# under TCG). Verifies the ELF carries the Xen PHYS32_ENTRY note (type 18) QEMU needs.
extract_vmlinux() {
	python3 - "$1" "$2" <<'EOF'
import lzma, struct, sys
src, dst = sys.argv[1], sys.argv[2]
d = open(src, "rb").read()
setup_sects = d[0x1f1] or 4
off, length = struct.unpack_from("<II", d, 0x248)
start = (setup_sects + 1) * 512 + off
payload = d[start:start + length]
if not payload.startswith(b"\xfd7zXZ\x00"):
    i = d.find(b"\xfd7zXZ\x00")
    if i < 0:
        sys.exit("no xz payload in %s" % src)
    payload = d[i:]
elf = lzma.LZMADecompressor().decompress(payload)
if elf[:4] != b"\x7fELF" or elf[4] != 2:
    sys.exit("payload is not a 64-bit ELF")
phoff, = struct.unpack_from("<Q", elf, 0x20)
phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
pvh = False
for i in range(phnum):
    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
    if p_type != 4:  # PT_NOTE
        continue
    pos, end = p_offset, p_offset + p_filesz
    while pos + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
        name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
        if name == b"Xen" and ntype == 18:
            pvh = True
        pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
if not pvh:
    sys.exit("vmlinux has no PVH (Xen PHYS32_ENTRY) note")
open(dst, "wb").write(elf)
EOF
}

build_kernel_dir() {
	local work rc
	work=$(mktemp -d "$CACHE/.build.XXXXXX") || die_skip "cannot create a work dir in $CACHE"
	build_kernel_in "$work" "$@"
	rc=$?
	rm -rf "$work"
	return $rc
}

build_kernel_in() {
	local work=$1 pkg=$2 ver=$3 kdir=$4
	local kver=${pkg#linux-image-}
	local deb mods m f list
	log "downloading $pkg $ver with apt-get"
	# apt downloads as the _apt user when it can write to the directory.
	chown _apt "$work" 2>/dev/null || true
	if ! (cd "$work" && apt-get "${APT_OPTS[@]}" -qq download "$pkg=$ver" >&2); then
		log "download failed; running apt-get update once"
		apt_update || return 1
		(cd "$work" && apt-get "${APT_OPTS[@]}" -qq download "$pkg=$ver" >&2) || return 1
	fi
	deb=$(ls "$work"/"${pkg}"_*.deb 2>/dev/null | head -n1)
	[ -n "$deb" ] || return 1
	log "extracting $(basename "$deb")"
	dpkg -x "$deb" "$work/k" || return 1
	local moddir="$work/k/lib/modules/$kver"
	[ -d "$moddir" ] || return 1
	depmod -b "$work/k" "$kver" || return 1
	grep -q '^CONFIG_RDMA_RXE=[ym]' "$work/k/boot/config-$kver" ||
		{ log "$pkg has no CONFIG_RDMA_RXE"; return 1; }

	# Keep only the modules the guest loads (uncompressed: busybox insmod takes plain
	# .ko), with their load order; the 300 MB module tree is dropped.
	local out="$work/out"
	mkdir -p "$out/modules"
	for list in base rdma; do
		if [ $list = base ]; then mods=("${BASE_MODULES[@]}"); else mods=("${RDMA_MODULES[@]}"); fi
		module_order "$moddir" "${mods[@]}" >"$work/order.$list" || return 1
	done
	# the rdma list without what the base list already loads
	grep -vxF -f "$work/order.base" "$work/order.rdma" >"$work/order.rdma2" || true
	for list in base rdma2; do
		: >"$out/modules/modules.${list%2}"
		while read -r m; do
			f=$(basename "$m")
			case "$f" in
			*.ko.xz) python3 -c 'import lzma,sys;open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$moddir/$m" "$out/modules/${f%.xz}" || return 1; f=${f%.xz} ;;
			*.ko.zst) zstd -q -d -f -o "$out/modules/${f%.zst}" "$moddir/$m" || return 1; f=${f%.zst} ;;
			*.ko.gz) gzip -dc "$moddir/$m" >"$out/modules/${f%.gz}" || return 1; f=${f%.gz} ;;
			*) cp "$moddir/$m" "$out/modules/$f" || return 1 ;;
			esac
			echo "$f" >>"$out/modules/modules.${list%2}"
		done <"$work/order.$list"
	done

	cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz" || return 1
	cp "$work/k/boot/config-$kver" "$out/config" || return 1
	if [ "$WANT_VMLINUX" = 1 ]; then
		if extract_vmlinux "$out/vmlinuz" "$out/vmlinux" >&2; then
			log "extracted vmlinux for PVH boot"
		else
			log "no vmlinux (PVH boot unavailable); the bzImage will be used"
			rm -f "$out/vmlinux"
		fi
	fi
	{
		echo "package=$pkg"
		echo "version=$ver"
		echo "kver=$kver"
		echo "deb_sha256=$(sha256sum "$deb" | cut -d' ' -f1)"
		echo "modules_base=$(tr '\n' ' ' <"$out/modules/modules.base")"
		echo "modules_rdma=$(tr '\n' ' ' <"$out/modules/modules.rdma")"
		echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$out/manifest"
	build_initrd "$out" || return 1
	touch "$out/.complete"
	rm -rf "$kdir"
	mv "$out" "$kdir" || return 1
	ln -sfn "$kver" "$CACHE/current.tmp" && mv -T "$CACHE/current.tmp" "$CACHE/current"
	log "ready: $kdir"
}

# The initramfs' identity: guest-init.sh and busybox. When either changes, only the
# initramfs is rebuilt (from the kept modules), not the kernel.
initrd_key() { cat "$RIG_DIR/guest-init.sh" /bin/busybox | sha256sum | cut -d' ' -f1; }
initrd_stale() { [ "$(cat "$1/initrd.key" 2>/dev/null)" != "$(initrd_key)" ]; }

build_initrd() {
	local kdir=$1 root
	root=$(mktemp -d "${TMPDIR:-/tmp}/rig-initrd.XXXXXX") || return 1
	mkdir -p "$root"/{bin,dev,proc,sys,mnt,newroot,ovl,lib}
	cp /bin/busybox "$root/bin/busybox" &&
		cp "$RIG_DIR/guest-init.sh" "$root/init" && chmod 755 "$root/init" &&
		cp -r "$kdir/modules" "$root/lib/modules" &&
		mv "$root/lib/modules/modules.base" "$root/lib/modules/modules.rdma" "$root/" || {
		rm -rf "$root"
		return 1
	}
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
	mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true
	# Uncompressed: QEMU copies it straight into guest RAM, and decompressing under TCG
	# would cost more than the few MiB saved.
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$kdir/initrd.cpio.tmp" &&
		mv "$kdir/initrd.cpio.tmp" "$kdir/initrd.cpio" &&
		initrd_key >"$kdir/initrd.key"
	local rc=$?
	rm -rf "$root"
	[ $rc = 0 ] && log "initramfs built: $kdir/initrd.cpio"
	return $rc
}

# Usable as it is, or after rebuilding its initramfs (no download).
refresh() {
	local kdir=$1
	ready "$kdir" || return 1
	if initrd_stale "$kdir"; then
		[ "$CHECK" = 0 ] && [ -w "$kdir" ] || return 1
		build_initrd "$kdir" || return 1
	fi
	return 0
}

main() {
	local pkgver pkg ver kver kdir
	ensure_packages
	if [ "$CHECK" = 0 ]; then
		mkdir -p "$CACHE" 2>/dev/null || die_skip "cannot create $CACHE (set FERRY_RIG_CACHE)"
	fi
	[ -d "$CACHE" ] || die_skip "no rig cache at $CACHE (run tests/rig/setup.sh as root)"
	# One builder at a time (two guests started together both call setup).
	{ exec 9>>"$CACHE/.lock"; } 2>/dev/null || exec 9</dev/null # read-only cache: no lock needed
	flock -w 900 9 || die_skip "timed out waiting for the lock on $CACHE"

	pkgver=$(resolve_kernel_pkg)
	if [ -z "$pkgver" ] && [ "$CHECK" = 0 ] && [ ! -e "$CACHE/current" ]; then
		log "apt lists know no linux-image-amd64; running apt-get update once"
		apt_update && pkgver=$(resolve_kernel_pkg)
	fi
	if [ -n "$pkgver" ]; then
		read -r pkg ver <<<"$pkgver"
		kver=${pkg#linux-image-}
		kdir="$CACHE/$kver"
		if grep -qx "version=$ver" "$kdir/manifest" 2>/dev/null && refresh "$kdir"; then
			echo "$kdir"
			return 0
		fi
		if [ "$CHECK" = 0 ]; then
			if build_kernel_dir "$pkg" "$ver" "$kdir"; then
				echo "$kdir"
				return 0
			fi
			log "could not obtain or build $pkg $ver"
		fi
	fi
	# Fall back to the last complete build (the mirror moved on, or we are offline).
	if refresh "$CACHE/current"; then
		log "using cached kernel $(readlink "$CACHE/current")"
		(cd "$CACHE/current" && pwd -P)
		return 0
	fi
	die_skip "no guest kernel available (linux-image-amd64 not resolvable or not downloadable)"
}

main
