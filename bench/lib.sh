# shellcheck shell=bash
# Helpers shared by the loopback benchmark scripts (bench-channels.sh,
# bench-tls.sh, loopback.sh); sourced, not run. They start servers on free
# loopback ports and end only the processes they started, by PID.

# pids: every background process started here; tmp: a scratch directory.
# Both are cleaned up when the script exits.
pids=()
tmp=$(mktemp -d)
bench_cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap bench_cleanup EXIT

# A TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# Wait (up to 120 s) until something listens on 127.0.0.1:$1, without connecting to it.
wait_listen() {
	for _ in $(seq 1200); do
		ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# iperf_json STREAMS SECONDS FILE [client options...]: one iperf3 run with
# STREAMS parallel streams against a server started here (and killed after),
# its JSON report in FILE. Fails when the client does.
iperf_json() {
	local streams=$1 secs=$2 file=$3 port spid rc=0
	shift 3
	port=$(free_port)
	iperf3 -s -p "$port" -B 127.0.0.1 >/dev/null 2>&1 &
	spid=$!
	pids+=("$spid")
	wait_listen "$port" || return 1
	iperf3 -c 127.0.0.1 -p "$port" -P "$streams" -t "$secs" "$@" -J >"$file" || rc=$?
	((rc == 0)) || echo "iperf3 -P $streams failed" >&2
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	return "$rc"
}
