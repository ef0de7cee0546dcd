#!/bin/sh
# The guest side of bench/rig.sh: guest A (RIG_ROLE=a) is the destination,
# `ferry bench --server`, guest B the source, `ferry bench --peer A ...` with
# the matrix options given, writing its results to $RIG_OUT/bench.
# Usage (by bench/rig.sh): rig-guest.sh FERRY [ferry bench options...]
ferry=$1
shift
ulimit -l unlimited 2>/dev/null
if [ "$RIG_ROLE" = a ]; then
	exec "$ferry" bench --server "tcp:$RIG_IP" --once --max-ram 512M
fi
exec "$ferry" bench --peer "$RIG_PEER_IP" --out "$RIG_OUT/bench" "$@"
