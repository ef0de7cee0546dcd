#!/usr/bin/env bash
# Two-host `ferry bench` between two network namespaces on this machine:
# fb-src (192.0.2.1) runs `ferry bench --peer`, fb-dst (192.0.2.2) runs
# `ferry bench --server --once`, joined by a veth pair. Needs root and ip(8).
#
#   bench/netns.sh BUILD_DIR OUT_DIR [ferry bench matrix options...]
#
# The namespaces are removed on exit. Exit status: the peer's (77 when the
# namespaces cannot be made here).
set -euo pipefail
build=${1:?usage: bench/netns.sh BUILD_DIR OUT_DIR [options...]}
out=${2:?usage: bench/netns.sh BUILD_DIR OUT_DIR [options...]}
shift 2
ferry=$(realpath "$build/ferry")
src=fb-src-$$
dst=fb-dst-$$

cleanup() {
	[[ -n ${server_pid:-} ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	ip netns del "$src" 2>/dev/null || true
	ip netns del "$dst" 2>/dev/null || true
}
trap cleanup EXIT

if ! ip netns add "$src" 2>/dev/null; then
	echo "bench/netns.sh: cannot create network namespaces here (root and ip netns needed)" >&2
	exit 77
fi
ip netns add "$dst"
ip link add "veth-s$$" netns "$src" type veth peer name "veth-d$$" netns "$dst"
ip -n "$src" addr add 192.0.2.1/24 dev "veth-s$$"
ip -n "$dst" addr add 192.0.2.2/24 dev "veth-d$$"
for ns in "$src" "$dst"; do
	ip -n "$ns" link set lo up
done
ip -n "$src" link set "veth-s$$" up
ip -n "$dst" link set "veth-d$$" up

ip netns exec "$dst" "$ferry" bench --server tcp:192.0.2.2 --once --max-ram 4G \
	2> >(sed 's/^/[server] /' >&2) &
server_pid=$!
# Wait until the server listens (a probe connection would be its one peer).
for _ in $(seq 50); do
	ip netns exec "$dst" ss -Htln 'sport = :4480' | grep -q . && break
	sleep 0.1
done
status=0
ip netns exec "$src" "$ferry" bench --peer 192.0.2.2 --out "$out" "$@" || status=$?
wait "$server_pid" || true
server_pid=
exit "$status"
