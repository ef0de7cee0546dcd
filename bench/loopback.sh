#!/usr/bin/env bash
# Loopback benchmarks of the single-channel TCP path, each against a reference
# measured in the same run:
#   1. a non-live guest (no vCPUs) of non-zero pages, ferry send -> ferry listen,
#      against `iperf3 -c 127.0.0.1` (one stream), median of RUNS runs;
#   2. achieved downtime against the limit at three dirty rates.
# Usage: bench/loopback.sh [BUILD_DIR] (default build/). Environment: RAM (2G),
# LIVE_RAM (1G), RUNS (3), RATES ("50M 200M 400M"), LIMIT (300).
# Prints a Markdown table on stdout; raw JSON lines go to $OUT (default
# build/bench/loopback-<time>.jsonl).
set -euo pipefail

BUILD=${1:-build}
FERRY=$BUILD/ferry
RAM=${RAM:-2G}
LIVE_RAM=${LIVE_RAM:-1G}
RUNS=${RUNS:-3}
RATES=${RATES:-"50M 200M 400M"}
LIMIT=${LIMIT:-300}
OUT=${OUT:-$BUILD/bench/loopback-$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$OUT")"
[ -x "$FERRY" ] || { echo "no $FERRY: build first" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

iperf_once() {
	iperf_json 1 5 "$tmp/iperf.json" &&
		python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/8)' "$tmp/iperf.json"
}

# One migration; prints "source-json<TAB>destination-json" and the CPU seconds of each side.
migrate_once() {
	local ram=$1 vcpus=$2 rate=$3 port; port=$(free_port)
	local dlog slog; dlog=$(mktemp); slog=$(mktemp)
	/usr/bin/time -f '%U %S' -o "$dlog.cpu" "$FERRY" listen "tcp:127.0.0.1:$port" --ram "$ram" \
		--vcpus "$vcpus" --json --timeout 600000 >"$dlog" 2>/dev/null & local dpid=$!; pids+=("$dpid")
	wait_listen "$port"
	/usr/bin/time -f '%U %S' -o "$slog.cpu" "$FERRY" send "tcp:127.0.0.1:$port" --ram "$ram" \
		--vcpus "$vcpus" --dirty-rate "$rate" --downtime-limit "$LIMIT" --json \
		--timeout 600000 >"$slog" 2>/dev/null || true
	wait "$dpid" || true
	python3 - "$slog" "$dlog" "$slog.cpu" "$dlog.cpu" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
d = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
cs = sum(map(float, open(sys.argv[3]).read().split()[-2:]))
cd = sum(map(float, open(sys.argv[4]).read().split()[-2:]))
s["cpu_s"] = cs; d["cpu_s"] = cd
print(json.dumps({"source": s, "destination": d}))
EOF
	rm -f "$dlog" "$slog" "$dlog.cpu" "$slog.cpu"
}

echo "# machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Non-live $RAM guest over loopback TCP (single channel) vs iperf3, $RUNS runs"
echo
echo "| run | iperf3 MB/s | ferry MB/s | ratio | ferry total s | migration CPU s/GiB src | dst | process CPU s/GiB src | dst | verified |"
echo "|---|---|---|---|---|---|---|---|---|---|"
ratios=(); ferry_bw=(); iperf_bw=()
for i in $(seq "$RUNS"); do
	ib=$(iperf_once)
	line=$(migrate_once "$RAM" 0 0)
	echo "$line" >>"$OUT"
	read -r fb tot mcs mcd cps cpd ver < <(python3 -c '
import json,sys
j=json.loads(sys.argv[1]); s=j["source"]; d=j["destination"]
gib=s["total_ram"]/2**30
# The idle guest has one round: its throughput is the bulk transfer rate.
# Migration CPU: the migration thread only; process CPU adds building the guest.
print(s["throughput"], s["total_ms"]/1000, s["cpu_ms"]/1000/gib, d["cpu_ms"]/1000/gib,
      s["cpu_s"]/gib, d["cpu_s"]/gib, d.get("verified"))' "$line")
	r=$(python3 -c "print(round($fb/$ib,3))")
	ratios+=("$r"); ferry_bw+=("$fb"); iperf_bw+=("$ib")
	printf '| %d | %.0f | %.0f | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n' "$i" \
		"$(python3 -c "print($ib/1e6)")" "$(python3 -c "print($fb/1e6)")" "$r" "$tot" \
		"$mcs" "$mcd" "$cps" "$cpd" "$ver"
done
printf '| **median** | %.0f | %.0f | **%s** | | | | | | |\n' \
	"$(printf '%s\n' "${iperf_bw[@]}" | median | python3 -c 'import sys;print(float(sys.stdin.read())/1e6)')" \
	"$(printf '%s\n' "${ferry_bw[@]}" | median | python3 -c 'import sys;print(float(sys.stdin.read())/1e6)')" \
	"$(printf '%s\n' "${ratios[@]}" | median)"
echo
echo "## Live $LIVE_RAM guest, 2 vCPUs (pattern ab), downtime limit $LIMIT ms, $RUNS runs per rate"
echo
echo "| dirty rate | downtime ms (median) | expected ms (median) | rounds (median) | total s (median) | all verified |"
echo "|---|---|---|---|---|---|"
for rate in $RATES; do
	dts=(); exps=(); rounds=(); tots=(); allv=true
	for i in $(seq "$RUNS"); do
		line=$(migrate_once "$LIVE_RAM" 2 "$rate")
		echo "$line" >>"$OUT"
		read -r dt ex ro to ve < <(python3 -c '
import json,sys
j=json.loads(sys.argv[1]); s=j["source"]; d=j["destination"]
print(s["downtime_ms"], s["expected_downtime_ms"], s["rounds"], s["total_ms"]/1000, d.get("verified"))' "$line")
		dts+=("$dt"); exps+=("$ex"); rounds+=("$ro"); tots+=("$to")
		[ "$ve" = True ] || allv=false
	done
	printf '| %s/s | %s | %s | %s | %s | %s |\n' "$rate" \
		"$(printf '%s\n' "${dts[@]}" | median)" "$(printf '%s\n' "${exps[@]}" | median)" \
		"$(printf '%s\n' "${rounds[@]}" | median)" "$(printf '%s\n' "${tots[@]}" | median)" "$allv"
done
echo
echo "raw results: $OUT"
