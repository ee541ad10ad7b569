#!/usr/bin/env bash
# A multi-stream encode farm through gpubalance: N concurrent ffmpeg encodes,
# each under `gpubalance exec`, each placed by the core on NVENC, VA-API or
# the CPU according to what this machine has and what the others hold.
#
#   examples/farm.sh [--streams N] [--seconds S] [--sim] [--build DIR]
#
# --sim uses examples/sim-farm.conf: two simulated GPUs (reported as `sim`)
# in a pool capped at 3 sessions, so placement and fallback show on a
# machine without GPUs. Without it, the machine's real devices are used.
set -euo pipefail
cd "$(dirname "$0")/.."

streams=6
seconds=5
build=build
use_sim=0
while [ $# -gt 0 ]; do
    case "$1" in
    --streams) streams=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --sim) use_sim=1; shift ;;
    *) echo "farm.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

[ -d "$build" ] || meson setup "$build" >/dev/null
meson compile -C "$build" >/dev/null
gpubalance="$PWD/$build/common/gpubalance"
work=$(mktemp -d /tmp/gpubalance-farm-XXXXXX)
trap 'rm -rf "$work"' EXIT
export GPUBALANCE_DIR="$work/ledger"
if [ "$use_sim" = 1 ]; then
    export GPUBALANCE_CONFIG="$PWD/examples/sim-farm.conf"
fi
export FARM_READY="$work/ready"
: >"$FARM_READY"

echo "== what gpubalance found on this machine"
"$gpubalance" probe
echo
echo "== starting $streams encodes of ${seconds}s of 1280x720@30 H.264"
pids=()
for i in $(seq 1 "$streams"); do
    "$gpubalance" exec --codec h264 --width 1280 --height 720 --fps 30 --label "stream-$i" -- \
        examples/encode-with-lease.sh -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=$seconds" -- \
        "$work/stream-$i.mp4" &
    pids+=($!)
done

# Show the ledger once every encode holds its lease.
while [ "$(wc -l <"$FARM_READY")" -lt "$streams" ]; do
    if ! kill -0 "${pids[@]}" 2>/dev/null && [ "$(wc -l <"$FARM_READY")" -lt "$streams" ]; then
        break # one ended early; its error is printed below
    fi
    sleep 0.1
done
echo
echo "== while encoding"
"$gpubalance" status

failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=$((failed + 1))
done

echo
echo "== results"
for i in $(seq 1 "$streams"); do
    frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
        -of csv=p=0 "$work/stream-$i.mp4" 2>/dev/null || echo 0)
    echo "stream-$i: $frames frames"
done
echo
echo "== after: every lease is gone"
"$gpubalance" status
if [ "$failed" -gt 0 ]; then
    echo "$failed encode(s) failed" >&2
    exit 1
fi
