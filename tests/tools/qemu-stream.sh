#!/bin/sh
# SPDX-License-Identifier: MIT
#
# qemu-stream.sh OUT [uuid]
#
# Write a real savevm v3 stream made by QEMU into OUT: a paused TCG guest
# (-M pc -nodefaults -m 64 -S) migrated with `exec:cat > OUT` over QMP.
# With "uuid", the guest gets -uuid and the capabilities validate-uuid and
# x-ignore-shared are on, so the configuration section carries its
# "configuration/capabilities" and "configuration/uuid" subsections.
#
# Exit status: 0 on success, 77 when qemu-system-x86_64 (or python3, the QMP
# client) is not installed, 1 on any failure. Every wait is bounded.
set -eu

usage() {
	echo "usage: $0 OUT [uuid]" >&2
	exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
out=$1
variant=${2:-plain}
case $variant in
plain | uuid) ;;
*) usage ;;
esac

QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null 2>&1; then
	echo "qemu-stream.sh: $QEMU not found" >&2
	exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "qemu-stream.sh: python3 not found (needed as the QMP client)" >&2
	exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-qemu.XXXXXX")
sock=$dir/qmp.sock
qpid=
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

extra=
caps='[]'
if [ "$variant" = uuid ]; then
	extra="-uuid 6e0a1c3d-5b2f-4c8e-9a71-d4f3b2e1c0a9"
	caps='[{"capability": "validate-uuid", "state": true}, {"capability": "x-ignore-shared", "state": true}]'
fi

rm -f "$out"
# shellcheck disable=SC2086 # $extra is meant to split into two words
"$QEMU" -M pc -nodefaults -m 64 -S -display none -accel tcg $extra \
	-qmp "unix:$sock,server=on,wait=off" >"$dir/qemu.log" 2>&1 &
qpid=$!

# The QMP client: waits for the socket (10 s), negotiates, sets the
# capabilities, starts the migration, polls query-migrate (60 s), quits.
python3 - "$sock" "$out" "$caps" "$qpid" <<'PY'
import json, os, socket, sys, time

sock_path, out, caps, qpid = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])

def fail(msg):
    sys.stderr.write("qemu-stream.sh: %s\n" % msg)
    sys.exit(1)

deadline = time.monotonic() + 10
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        break
    except OSError:
        s.close()
        try:
            os.kill(qpid, 0)
        except OSError:
            fail("qemu exited before its QMP socket appeared")
        if time.monotonic() > deadline:
            fail("no QMP socket after 10 s")
        time.sleep(0.05)
s.settimeout(30)
f = s.makefile("rwb")

def recv():
    line = f.readline()
    if not line:
        fail("QMP connection closed")
    return json.loads(line)

def cmd(name, args=None):
    msg = {"execute": name}
    if args is not None:
        msg["arguments"] = args
    f.write((json.dumps(msg) + "\n").encode())
    f.flush()
    while True:
        r = recv()
        if "return" in r:
            return r["return"]
        if "error" in r:
            fail("%s: %s" % (name, r["error"].get("desc", r["error"])))
        # anything else is an event; skip it

recv()  # the greeting
cmd("qmp_capabilities")
if caps:
    cmd("migrate-set-capabilities", {"capabilities": caps})
# cat writes a temporary name and renames it when it has everything, so
# the file appears complete or not at all.
q = lambda p: "'" + p.replace("'", "'\\''") + "'"
cmd("migrate", {"uri": "exec:cat > %s && mv %s %s" % (q(out + ".part"), q(out + ".part"), q(out))})
deadline = time.monotonic() + 60
while True:
    st = cmd("query-migrate")
    status = st.get("status")
    if status == "completed":
        ram = st.get("ram", {})
        sys.stderr.write("qemu-stream.sh: completed: normal=%s duplicate=%s total=%s\n" %
                         (ram.get("normal"), ram.get("duplicate"), ram.get("total")))
        break
    if status in ("failed", "cancelled"):
        fail("migration %s: %s" % (status, st.get("error-desc", "")))
    if time.monotonic() > deadline:
        fail("migration not completed after 60 s (status %s)" % status)
    time.sleep(0.05)
cmd("quit")
PY

# quit was accepted; give QEMU and its `cat` 10 s to finish.
i=0
while { kill -0 "$qpid" 2>/dev/null || [ ! -e "$out" ]; } && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
wait "$qpid" 2>/dev/null || true
qpid=
[ -s "$out" ] || {
	echo "qemu-stream.sh: $out is empty" >&2
	exit 1
}
