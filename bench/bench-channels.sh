#!/usr/bin/env bash
# Loopback benchmark of the multi-channel TCP data path (docs/data-path.md),
# against iperf3 with the same number of streams, measured in the same run:
# for each channel count N, RUNS times in turn,
#   1. a non-live guest (no vCPUs, no dirty log) of RAM bytes of non-zero pages,
#      `ferry send --channels N` -> `ferry listen`, the destination verifying
#      every page afterwards;
#   2. `iperf3 -c 127.0.0.1 -P N` for IPERF_TIME seconds against an
#      `iperf3 -s` started here on a free loopback port and killed by its PID.
# The destination's RAM is backed by transparent huge pages (--huge:
# MADV_HUGEPAGE) and populated before the source connects (`ferry listen`
# always does: MADV_POPULATE_WRITE, one thread per CPU). The source's RAM is
# filled (so populated) when its guest is built, also THP-backed.
# CPU seconds are the ones each ferry process used from the start of the
# migration to its end (getrusage), reported by `--json` as cpu_s; guest
# building, filling and populating are outside that window.
#
# Usage: bench/bench-channels.sh [BUILD_DIR] (default build/).
# A channel count of 0 measures the main stream alone (issue 3's path).
# Environment: RAM (2G), RUNS (3), CHANNELS ("1 2 4"), IPERF_TIME (5),
# IPERF_ARGS (extra iperf3 client options, e.g. "-l 1M"; default none, so
# iperf3's own 128 KiB writes), ZEROCOPY (empty, or 1 for --zerocopy),
# OUT (raw JSON lines, default BUILD_DIR/bench/channels-<time>.jsonl).
# Prints the machine and a Markdown table of medians on stdout.
set -euo pipefail

BUILD=${1:-build}
FERRY=$BUILD/ferry
RAM=${RAM:-2G}
RUNS=${RUNS:-3}
CHANNELS=${CHANNELS:-"1 2 4"}
IPERF_TIME=${IPERF_TIME:-5}
IPERF_ARGS=${IPERF_ARGS:-}
ZEROCOPY=${ZEROCOPY:-}
OUT=${OUT:-$BUILD/bench/channels-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$OUT")"
[ -x "$FERRY" ] || { echo "no $FERRY: build first" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

# One migration over $1 channels; appends {"kind":"ferry",...} to $OUT.
ferry_once() {
	local n=$1 port; port=$(free_port)
	local zc=(); [ -n "$ZEROCOPY" ] && zc=(--zerocopy)
	"$FERRY" listen "tcp:127.0.0.1:$port" --ram "$RAM" --huge --json --timeout 600000 \
		>"$tmp/dst.json" 2>"$tmp/dst.err" & local dpid=$!; pids+=("$dpid")
	wait_listen "$port"
	"$FERRY" send "tcp:127.0.0.1:$port" --ram "$RAM" --huge --non-live --channels "$n" \
		"${zc[@]}" --json --timeout 600000 >"$tmp/src.json" 2>"$tmp/src.err" || true
	wait "$dpid" || true
	python3 - "$n" "$tmp/src.json" "$tmp/dst.json" >>"$OUT" <<'EOF'
import json, sys
n = int(sys.argv[1])
def last(path):
    lines = open(path).read().strip().splitlines()
    return json.loads(lines[-1]) if lines else {"status": "no output"}
print(json.dumps({"kind": "ferry", "channels": n, "source": last(sys.argv[2]),
                  "destination": last(sys.argv[3])}))
EOF
}

# One iperf3 run with $1 streams (channel count 0, the main stream alone, is
# compared with one stream); appends {"kind":"iperf3",...} to $OUT.
iperf_once() {
	local n=$1 streams=$1
	[ "$n" -eq 0 ] && streams=1
	# shellcheck disable=SC2086 # IPERF_ARGS is a list of options
	iperf_json "$streams" "$IPERF_TIME" "$tmp/iperf.json" $IPERF_ARGS || true
	python3 - "$n" "$tmp/iperf.json" >>"$OUT" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[2]))
    end = j["end"]
    end["sum_received"]["bits_per_second"]
except (ValueError, KeyError) as e:
    sys.stderr.write(f"iperf3 gave no result: {e}\n")
    sys.exit(1)
cpu = end.get("cpu_utilization_percent", {})
print(json.dumps({"kind": "iperf3", "streams": int(sys.argv[1]),
                  "bits_per_second": end["sum_received"]["bits_per_second"],
                  "seconds": end["sum_received"]["seconds"],
                  "bytes": end["sum_received"]["bytes"],
                  "sender_cpu_pct": cpu.get("host_total"),
                  "receiver_cpu_pct": cpu.get("remote_total")}))
EOF
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "guest: $RAM non-live, non-zero pages; runs: $RUNS; iperf3: ${IPERF_TIME}s per run${IPERF_ARGS:+ ($IPERF_ARGS)}${ZEROCOPY:+; MSG_ZEROCOPY on}"
echo "raw results: $OUT"
echo

for n in $CHANNELS; do
	for r in $(seq "$RUNS"); do
		ferry_once "$n"
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
def med(xs):
    return statistics.median(xs) if xs else float("nan")
# Every run, ferry and the iperf3 run right after it.
print("| channels | run | ferry Gbit/s | iperf3 -P N Gbit/s | ratio | source CPU-s/GiB | "
      "destination CPU-s/GiB | verified |")
print("|---|---|---|---|---|---|---|---|")
runs = {}
for r in rows:
    n = r["channels"] if r["kind"] == "ferry" else r["streams"]
    runs.setdefault(n, {"ferry": [], "iperf3": []})[r["kind"]].append(r)
for n in sorted(runs):
    for i, (f, ip) in enumerate(zip(runs[n]["ferry"], runs[n]["iperf3"]), 1):
        s, d = f["source"], f["destination"]
        ok = s.get("status") == "completed" and d.get("verified")
        if not ok:
            print(f"| {n} | {i} | {s.get('status')} | {ip['bits_per_second'] / 1e9:.2f} | | | | no |")
            continue
        g = s["normal_bytes"] * 8 / ((s["total_ms"] - s["setup_ms"]) / 1e3) / 1e9
        print(f"| {n} | {i} | {g:.2f} | {ip['bits_per_second'] / 1e9:.2f} | "
              f"{g / (ip['bits_per_second'] / 1e9):.2f} | "
              f"{s['cpu_s'] / (s['normal_bytes'] / GIB):.2f} | "
              f"{d['cpu_s'] / (d['normal_bytes'] / GIB):.2f} | yes |")
print()
print("Medians:")
print()
print("| channels | ferry Gbit/s | iperf3 -P N Gbit/s | ferry / iperf3 | ferry Gbit/s incl. setup | "
      "setup ms | source CPU-s/GiB | destination CPU-s/GiB | iperf3 CPU-s/GiB snd / rcv | "
      "syscalls/MiB src / dst | memcpy/byte src / dst | failed runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in sorted({r["channels"] for r in rows if r["kind"] == "ferry"}):
    ok, bad = [], 0
    for r in rows:
        if r["kind"] != "ferry" or r["channels"] != n:
            continue
        s, d = r["source"], r["destination"]
        if s.get("status") != "completed" or not d.get("verified"):
            bad += 1
            continue
        ok.append(r)
    ip = [r for r in rows if r["kind"] == "iperf3" and r["streams"] == n]
    # The data path's rate: from the first page to the destination's verdict
    # (setup_ms, before it, is connecting, placing and negotiating; iperf3's
    # rate likewise leaves its connection setup out).
    gbps = [r["source"]["normal_bytes"] * 8 /
            ((r["source"]["total_ms"] - r["source"]["setup_ms"]) / 1e3) / 1e9 for r in ok]
    gbps_all = [r["source"]["normal_bytes"] * 8 / (r["source"]["total_ms"] / 1e3) / 1e9
                for r in ok]
    setup = [r["source"]["setup_ms"] for r in ok]
    igbps = [r["bits_per_second"] / 1e9 for r in ip]
    scpu = [r["source"]["cpu_s"] / (r["source"]["normal_bytes"] / GIB) for r in ok]
    dcpu = [r["destination"]["cpu_s"] / (r["destination"]["normal_bytes"] / GIB) for r in ok]
    # iperf3 reports CPU as a percentage of one CPU over the run.
    icpu_s = [r["sender_cpu_pct"] / 100 * r["seconds"] / (r["bytes"] / GIB) for r in ip
              if r["sender_cpu_pct"] is not None]
    icpu_r = [r["receiver_cpu_pct"] / 100 * r["seconds"] / (r["bytes"] / GIB) for r in ip
              if r["receiver_cpu_pct"] is not None]
    ssys = [r["source"].get("syscalls_per_mib", 0) for r in ok]
    dsys = [r["destination"].get("syscalls_per_mib", 0) for r in ok]
    smc = [r["source"].get("memcpy_per_byte", 0) for r in ok]
    dmc = [r["destination"].get("memcpy_per_byte", 0) for r in ok]
    ratio = med(gbps) / med(igbps) if igbps and gbps else float("nan")
    print(f"| {n} | {med(gbps):.2f} | {med(igbps):.2f} | {ratio:.2f} | {med(gbps_all):.2f} | "
          f"{med(setup):.0f} | {med(scpu):.2f} | "
          f"{med(dcpu):.2f} | {med(icpu_s):.2f} / {med(icpu_r):.2f} | {med(ssys):.2f} / "
          f"{med(dsys):.2f} | {med(smc):.0f} / {med(dmc):.0f} | {bad} |")
EOF
