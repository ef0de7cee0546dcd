#!/bin/bash
# Run the KVM tests where KVM exists: inside a QEMU guest (TCG) of the test rig,
# whose emulated CPU has AMD SVM, with Debian's kvm and kvm_amd modules loaded,
# so /dev/kvm appears in the guest (nested virtualisation under TCG).
#
# Usage: tests/kvm/nested-rig.sh [options] [-- command [args...]]
#
#   -b, --build-dir DIR   the build tree to run in (default: build/ of this tree, or
#                         $FERRY_BUILD_DIR); the guest sees it through the host's root.
#                         Do not rebuild it while the guest runs: the guest reads the
#                         binaries through 9p and a replaced one breaks the run
#   -t, --timeout SEC     bound on the whole guest run (default 900)
#   -m, --mem MIB         guest RAM (default 2048)
#   --rig-dir DIR         the rig's scripts (default: tests/rig of this tree, or
#                         $FERRY_RIG_DIR)
#   --out-dir DIR         keep the rig's results (stdout, stderr, console.log, ...)
#   --append ARGS         more guest kernel arguments (e.g. loglevel=7 to see backtraces)
#   --kvm-param M.P=V     a module parameter for insmod, e.g. kvm_amd.npt=0 (repeatable;
#                         default kvm_amd.vgif=0, see below; "none" for no parameter)
#   -v                    print the QEMU command line
#
# The default command runs every KVM test of the build tree's test runner (the
# reference hypervisor's suites and the engine's KVM dirty-log suite):
#   ./tests/ferry-tests --filter '@(kvm_*|engine_dirty_kvm)/*' --verbose --jobs 1
# Any other command runs in the build directory, after the modules are loaded.
#
# The modules: the rig's guest kernel is Debian's linux-image-<abi>-amd64; its
# kvm, kvm-amd, kvm-intel and their dependencies (irqbypass, ccp) are taken
# from that same package (apt-get download, or $FERRY_RIG_KERNEL_DEB when it
# names the same .deb) and kept uncompressed in $FERRY_KVM_RIG_CACHE (default
# /var/cache/ferry-rig-kvm/<abi>/). The guest loads them with insmod from that
# host path; the rig's initramfs is not changed.
#
# Exit status: the command's; 77 when the rig or nested KVM is unavailable (the
# reason on stderr); 124/125 from the rig (timeout / rig failure).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=${FERRY_BUILD_DIR:-$SRC/build}
TIMEOUT=900
MEM=2048
RIG=${FERRY_RIG_DIR:-$SRC/tests/rig}
OUT_DIR=
VERBOSE=()
APPEND=
KVM_PARAMS=()
# Virtual GIF as QEMU's TCG emulates it froze the rig guest twice in runs of the
# kvm suites under a loaded host (RCU stalls, soft lockups on idle CPUs, the
# test never ending); with kvm_amd.vgif=0 the same runs passed 6 times out of 6.
DEFAULT_KVM_PARAMS=(kvm_amd.vgif=0)
KCACHE=${FERRY_KVM_RIG_CACHE:-/var/cache/ferry-rig-kvm}

msg() { echo "nested-rig: $*" >&2; }
skip() {
	msg "cannot run: $*"
	exit 77
}

while [ $# -gt 0 ]; do
	case "$1" in
	-b | --build-dir) BUILD=$2; shift ;;
	-t | --timeout) TIMEOUT=$2; shift ;;
	-m | --mem) MEM=$2; shift ;;
	--rig-dir) RIG=$2; shift ;;
	--out-dir) OUT_DIR=$2; shift ;;
	--append) APPEND=$2; shift ;;
	--kvm-param) KVM_PARAMS+=("$2"); shift ;;
	-v) VERBOSE=(-v) ;;
	-h | --help)
		sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	--) shift; break ;;
	*) msg "unknown option $1"; exit 2 ;;
	esac
	shift
done
if [ ${#KVM_PARAMS[@]} -eq 0 ]; then
	KVM_PARAMS=("${DEFAULT_KVM_PARAMS[@]}")
elif [ "${KVM_PARAMS[*]}" = none ]; then
	KVM_PARAMS=()
fi
if [ $# -eq 0 ]; then
	set -- ./tests/ferry-tests --filter '@(kvm_*|engine_dirty_kvm)/*' --verbose --jobs 1
fi

[ -x "$RIG/run-guest.sh" ] && [ -x "$RIG/setup.sh" ] ||
	skip "no test rig at $RIG (tests/rig/run-guest.sh; set FERRY_RIG_DIR)"
[ -d "$BUILD" ] || skip "no build directory $BUILD"
BUILD=$(cd "$BUILD" && pwd -P)

# ---------------------------------------------------------------- the guest kernel
KDIR=$("$RIG/setup.sh" --quiet) || skip "the rig's setup.sh failed"
PKG=$(sed -n 's/^package=//p' "$KDIR/manifest")
VER=$(sed -n 's/^version=//p' "$KDIR/manifest")
KVER=$(sed -n 's/^kver=//p' "$KDIR/manifest")
SHA=$(sed -n 's/^deb_sha256=//p' "$KDIR/manifest")
[ -n "$PKG" ] && [ -n "$VER" ] && [ -n "$KVER" ] || skip "$KDIR/manifest names no kernel package"
grep -q '^CONFIG_KVM_AMD=m' "$KDIR/config" || skip "the guest kernel has no kvm_amd module"

# ---------------------------------------------------------------- the KVM modules
MODDIR="$KCACHE/$KVER"
TOP_MODULES="kvm_amd kvm_intel"

build_modules() {
	local work deb moddir f m
	mkdir -p "$KCACHE" || return 1
	work=$(mktemp -d "$KCACHE/.build.XXXXXX") || return 1
	deb=${FERRY_RIG_KERNEL_DEB:-}
	if [ -n "$deb" ] && [ "$(sha256sum "$deb" 2>/dev/null | cut -d' ' -f1)" != "$SHA" ]; then
		msg "$deb is not $PKG $VER (sha256 differs); downloading"
		deb=
	fi
	if [ -z "$deb" ]; then
		msg "downloading $PKG $VER with apt-get (once)"
		chown _apt "$work" 2>/dev/null || true
		(cd "$work" && apt-get -o DPkg::Lock::Timeout=600 -qq download "$PKG=$VER" >&2) ||
			{ rm -rf "$work"; return 1; }
		deb=$(ls "$work"/"$PKG"_*.deb | head -n1)
	fi
	dpkg -x "$deb" "$work/k" && depmod -b "$work/k" "$KVER" || { rm -rf "$work"; return 1; }
	moddir="$work/k/lib/modules/$KVER"
	mkdir -p "$work/out"
	# Dependencies first, from modules.dep (deepest last on each line).
	for m in $TOP_MODULES; do
		python3 - "$moddir" "$m" <<'EOF' || { rm -rf "$work"; return 1; }
import os, sys
moddir, want = sys.argv[1], sys.argv[2]
deps, byname = {}, {}
for line in open(os.path.join(moddir, "modules.dep")):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
    byname[os.path.basename(path).split(".ko")[0].replace("-", "_")] = path
order, seen = [], set()
def visit(p):
    if p in seen:
        return
    seen.add(p)
    for d in reversed(deps[p]):
        visit(d)
    order.append(p)
visit(byname[want])
print("\n".join(order))
EOF
	done >"$work/order.paths"
	: >"$work/out/order"
	while read -r m; do
		f=$(basename "$m")
		case "$f" in
		*.ko.xz) python3 -c 'import lzma,sys;open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' "$moddir/$m" "$work/out/${f%.xz}"; f=${f%.xz} ;;
		*.ko.zst) zstd -q -d -f -o "$work/out/${f%.zst}" "$moddir/$m"; f=${f%.zst} ;;
		*) cp "$moddir/$m" "$work/out/$f" ;;
		esac
		grep -qxF "$f" "$work/out/order" || echo "$f" >>"$work/out/order"
	done <"$work/order.paths"
	echo "$PKG $VER" >"$work/out/package"
	rm -rf "$MODDIR"
	mv "$work/out" "$MODDIR"
	rm -rf "$work"
}

if [ "$(cat "$MODDIR/package" 2>/dev/null)" != "$PKG $VER" ]; then
	build_modules || skip "could not extract the kvm modules of $PKG $VER"
fi

# ---------------------------------------------------------------- the job in the guest
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ferry-nested.XXXXXX") || skip "mktemp failed"
trap 'rm -rf "$RUN"' EXIT
cat >"$RUN/job.sh" <<EOF
# Guest side of nested-rig.sh: load KVM, then run the command.
cpu=\$(grep -o -w -m1 -e svm -e vmx /proc/cpuinfo)
case "\$cpu" in
svm) skipmod=kvm-intel.ko ;;
vmx) skipmod=kvm-amd.ko ;;
*) echo "nested-rig: the guest CPU offers neither svm nor vmx" >&2; exit 77 ;;
esac
while read -r m; do
	[ "\$m" = "\$skipmod" ] && continue
	name=\${m%.ko}
	grep -q "^\$(echo \$name | tr - _) " /proc/modules && continue
	params=
	for p in $(printf '%s ' ${KVM_PARAMS[@]+"${KVM_PARAMS[@]}"}); do
		case "\$p" in "\$(echo \$name | tr - _)".*) params="\$params \${p#*.}" ;; esac
	done
	insmod "$MODDIR/\$m" \$params || { echo "nested-rig: insmod \$m failed" >&2; exit 77; }
done <"$MODDIR/order"
[ -c /dev/kvm ] || { echo "nested-rig: no /dev/kvm after loading kvm (\$cpu)" >&2; dmesg | grep -i -e kvm -e svm >&2; exit 77; }
echo "nested-rig: /dev/kvm ready (\$cpu, nested=\$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null || cat /sys/module/kvm_intel/parameters/nested 2>/dev/null))" >&2
exec "\$@"
EOF

OUT_ARGS=()
[ -n "$OUT_DIR" ] && OUT_ARGS=(--out-dir "$OUT_DIR")
cd "$BUILD" || skip "cannot cd to $BUILD"
# no_timer_check: under a loaded host, TCG can be slow enough for the kernel's
# IO-APIC timer check to fail and panic at boot ("IO-APIC + timer doesn't work").
"$RIG/run-guest.sh" --no-rdma --append "no_timer_check${APPEND:+ $APPEND}" -m "$MEM" -s 2 -t "$TIMEOUT" \
	${VERBOSE[@]+"${VERBOSE[@]}"} ${OUT_ARGS[@]+"${OUT_ARGS[@]}"} -- sh "$RUN/job.sh" "$@"
