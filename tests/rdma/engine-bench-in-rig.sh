#!/bin/bash
# Whole migrations over the RDMA data path (`ferry send rdma:`) against perftest's
# ib_write_bw in one soft-RoCE guest: bench-in-rig.sh --engine (it says what runs).
#
# Usage: tests/rdma/engine-bench-in-rig.sh [-b BUILD_DIR] [-t SEC] [-s SMP] [-e NAME=VALUE]...
#   -e passes REPEATS, MIB, QPS, SETUP_MIB to guest-engine-bench.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/bench-in-rig.sh" --engine "$@"
