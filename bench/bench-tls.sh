#!/usr/bin/env bash
# Loopback benchmark of TLS (docs/security-tls.md) against the same migration
# in the clear and against iperf3, all measured in the same run: for each
# channel count N (0: the main stream alone) and RUNS times in turn,
#   1. `ferry send --channels N` -> `ferry listen` in the clear,
#   2. the same with x509 TLS (--tls-creds, certificates made here with
#      certtool; the cipher GnuTLS picks is printed),
#   3. `iperf3 -c 127.0.0.1 -P max(N,1)` for IPERF_TIME seconds against an
#      `iperf3 -s` started here and killed by its PID.
# The guest is non-live (no vCPUs, no dirty log), every page non-zero, THP
# backed and populated before the transfer on both sides; the destination
# verifies every page and device field afterwards.
#
# Usage: bench/bench-tls.sh [BUILD_DIR] (default build/).
# Environment: RAM (1G), RUNS (3), CHANNELS ("0 4"), IPERF_TIME (5),
# OUT (raw JSON lines, default BUILD_DIR/bench/tls-<time>.jsonl).
# Prints the machine and Markdown tables (every run, then medians) on stdout.
set -euo pipefail

BUILD=${1:-build}
FERRY=$BUILD/ferry
RAM=${RAM:-1G}
RUNS=${RUNS:-3}
CHANNELS=${CHANNELS:-"0 4"}
IPERF_TIME=${IPERF_TIME:-5}
OUT=${OUT:-$BUILD/bench/tls-$(date +%Y%m%d-%H%M%S).jsonl}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$OUT")"
[ -x "$FERRY" ] || { echo "no $FERRY: build first" >&2; exit 2; }
for t in iperf3 python3 certtool; do
	command -v $t >/dev/null || { echo "$t missing" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
sh "$HERE/../tests/channels/make-tls-certs.sh" "$tmp/certs"

# One migration over $1 channels, in mode $2 (plain or tls); appends a JSON line to $OUT.
ferry_once() {
	local n=$1 mode=$2 port; port=$(free_port)
	local tls=(); [ "$mode" = tls ] && tls=(--tls-creds "$tmp/certs/good")
	"$FERRY" listen "tcp:127.0.0.1:$port" --ram "$RAM" --huge --json --timeout 600000 \
		"${tls[@]}" >"$tmp/dst.json" 2>"$tmp/dst.err" & local dpid=$!; pids+=("$dpid")
	wait_listen "$port"
	"$FERRY" send "tcp:127.0.0.1:$port" --ram "$RAM" --huge --non-live --channels "$n" \
		"${tls[@]}" --json --timeout 600000 >"$tmp/src.json" 2>"$tmp/src.err" || true
	wait "$dpid" || true
	python3 - "$n" "$mode" "$tmp/src.json" "$tmp/dst.json" >>"$OUT" <<'EOF'
import json, sys
def last(path):
    lines = open(path).read().strip().splitlines()
    return json.loads(lines[-1]) if lines else {"status": "no output"}
print(json.dumps({"kind": "ferry", "channels": int(sys.argv[1]), "mode": sys.argv[2],
                  "source": last(sys.argv[3]), "destination": last(sys.argv[4])}))
EOF
}

iperf_once() {
	local n=$1 streams=$1
	[ "$n" -eq 0 ] && streams=1
	iperf_json "$streams" "$IPERF_TIME" "$tmp/iperf.json" || true
	python3 - "$n" "$tmp/iperf.json" >>"$OUT" <<'EOF'
import json, sys
j = json.load(open(sys.argv[2]))
print(json.dumps({"kind": "iperf3", "channels": int(sys.argv[1]),
                  "bits_per_second": j["end"]["sum_received"]["bits_per_second"]}))
EOF
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), GnuTLS $(certtool --version | head -1 | awk '{print $NF}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "guest: $RAM non-live, non-zero pages; runs: $RUNS; iperf3: ${IPERF_TIME}s per run"
echo "raw results: $OUT"
echo

for n in $CHANNELS; do
	for r in $(seq "$RUNS"); do
		ferry_once "$n" plain
		ferry_once "$n" tls
		iperf_once "$n"
		echo "channels $n run $r done" >&2
	done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
GIB = float(1 << 30)
def gbps(s):
    return s["normal_bytes"] * 8 / ((s["total_ms"] - s["setup_ms"]) / 1e3) / 1e9
def ok(r):
    return r["source"].get("status") == "completed" and r["destination"].get("verified")
def med(xs):
    return statistics.median(xs) if xs else float("nan")
cipher = {r["source"].get("tls") for r in rows if r["kind"] == "ferry" and r["mode"] == "tls"}
print("TLS:", ", ".join(sorted(c for c in cipher if c)))
print()
print("| channels | run | plain Gbit/s | TLS Gbit/s | iperf3 Gbit/s | TLS / plain | "
      "TLS source CPU-s/GiB | TLS destination CPU-s/GiB | verified |")
print("|---|---|---|---|---|---|---|---|---|")
chans = sorted({r["channels"] for r in rows})
for n in chans:
    p = [r for r in rows if r["kind"] == "ferry" and r["mode"] == "plain" and r["channels"] == n]
    t = [r for r in rows if r["kind"] == "ferry" and r["mode"] == "tls" and r["channels"] == n]
    i = [r for r in rows if r["kind"] == "iperf3" and r["channels"] == n]
    for k, (a, b, c) in enumerate(zip(p, t, i), 1):
        if not (ok(a) and ok(b)):
            print(f"| {n} | {k} | {a['source'].get('status')} | {b['source'].get('status')} "
                  f"| {c['bits_per_second'] / 1e9:.2f} | | | | no |")
            continue
        print(f"| {n} | {k} | {gbps(a['source']):.2f} | {gbps(b['source']):.2f} | "
              f"{c['bits_per_second'] / 1e9:.2f} | {gbps(b['source']) / gbps(a['source']):.2f} | "
              f"{b['source']['cpu_s'] / (b['source']['normal_bytes'] / GIB):.2f} | "
              f"{b['destination']['cpu_s'] / (b['destination']['normal_bytes'] / GIB):.2f} | yes |")
print()
print("Medians:")
print()
print("| channels | plain Gbit/s | TLS Gbit/s | iperf3 Gbit/s | TLS / plain | TLS / iperf3 | "
      "plain CPU-s/GiB src / dst | TLS CPU-s/GiB src / dst | TLS memcpy/byte src / dst | failed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in chans:
    p = [r for r in rows if r["kind"] == "ferry" and r["mode"] == "plain" and r["channels"] == n]
    t = [r for r in rows if r["kind"] == "ferry" and r["mode"] == "tls" and r["channels"] == n]
    i = [r["bits_per_second"] / 1e9 for r in rows if r["kind"] == "iperf3" and r["channels"] == n]
    bad = sum(1 for r in p + t if not ok(r))
    p, t = [r for r in p if ok(r)], [r for r in t if ok(r)]
    pg, tg = med([gbps(r["source"]) for r in p]), med([gbps(r["source"]) for r in t])
    def cpu(rs, side):
        return med([r[side]["cpu_s"] / (r[side]["normal_bytes"] / GIB) for r in rs])
    print(f"| {n} | {pg:.2f} | {tg:.2f} | {med(i):.2f} | {tg / pg:.2f} | {tg / med(i):.2f} | "
          f"{cpu(p, 'source'):.2f} / {cpu(p, 'destination'):.2f} | "
          f"{cpu(t, 'source'):.2f} / {cpu(t, 'destination'):.2f} | "
          f"{med([r['source'].get('memcpy_per_byte', 0) for r in t]):.2f} / "
          f"{med([r['destination'].get('memcpy_per_byte', 0) for r in t]):.2f} | {bad} |")
EOF
