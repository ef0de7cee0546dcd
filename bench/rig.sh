#!/usr/bin/env bash
# Two-host `ferry bench` in the two-guest soft-RoCE rig (tests/rig/run-two-guests.sh):
# guest A (192.0.2.1) runs `ferry bench --server`, guest B (192.0.2.2) runs
# `ferry bench --peer 192.0.2.1` with the given matrix; both have rxe0 on eth0.
# The results (B's results.jsonl, results.csv, report.md, plots) land in OUT_DIR/b/bench.
#
#   bench/rig.sh BUILD_DIR OUT_DIR [ferry bench matrix options...]
#
# Exit status: run-two-guests.sh's (77 when the rig cannot run here).
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:?usage: bench/rig.sh BUILD_DIR OUT_DIR [options...]}" && pwd -P) || exit 64
out=${2:?usage: bench/rig.sh BUILD_DIR OUT_DIR [options...]}
shift 2
exec "$here/../tests/rig/run-two-guests.sh" -t "${RIG_TIMEOUT:-900}" -m "${RIG_MEM:-1536}" \
	--out-dir "$out" -- \
	sh "$here/rig-guest.sh" "$build/ferry" --- sh "$here/rig-guest.sh" "$build/ferry" "$@"
