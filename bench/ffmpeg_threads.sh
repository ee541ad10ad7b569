#!/usr/bin/env bash
# Software throughput of balance_h264 against bare libx264 on the same
# input, in the same run, with the thread count each used.
#
#   bench/ffmpeg_threads.sh FFMPEG_PREFIX [ROUNDS] [SIZE] [SECONDS]
#
# FFMPEG_PREFIX is an FFmpeg built by ffmpeg-patches/build.sh. The input
# (testsrc2, SIZE, SECONDS at 30 fps) is rendered once to a raw file so
# that both encoders read the same bytes. Runs alternate (bare, wrapped)
# ROUNDS times; the best run of each is compared, since on a shared
# machine the noise only ever slows a run. Prints frames per second, the
# ratio wrapped/bare and each encoder's thread count from libx264's SEI.
set -euo pipefail

prefix=${1:?usage: bench/ffmpeg_threads.sh FFMPEG_PREFIX [ROUNDS] [SIZE] [SECONDS]}
rounds=${2:-3}
size=${3:-1280x720}
seconds=${4:-4}
ffmpeg="$prefix/bin/ffmpeg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# software placement only, in a private ledger
export GPUBALANCE_DIR="$work/ledger"
export GPUBALANCE_CONFIG="$work/gpubalance.conf"
printf '[general]\ndiscover=false\n' >"$GPUBALANCE_CONFIG"

"$ffmpeg" -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$size:rate=30:duration=$seconds" \
    -pix_fmt yuv420p -f rawvideo "$work/input.yuv"
frames=$((seconds * 30))

# Seconds one encode takes (ffmpeg's own -benchmark real time).
encode() {
    local encoder=$1 out=$2
    "$ffmpeg" -hide_banner -nostdin -benchmark -y -f rawvideo -pix_fmt yuv420p -s "$size" -r 30 \
        -i "$work/input.yuv" -c:v "$encoder" -preset veryfast -f matroska "$out" 2>&1 |
        sed -n 's/.*rtime=\([0-9.]*\)s.*/\1/p'
}

threads_of() {
    grep -a -o 'threads=[0-9]*' "$1" | head -n 1 | cut -d= -f2
}

best_bare=""
best_wrapped=""
for _ in $(seq "$rounds"); do
    t=$(encode libx264 "$work/bare.mkv")
    best_bare=$(python3 -c "print(min(x for x in [$t, ${best_bare:-$t}]))")
    t=$(encode balance_h264 "$work/wrapped.mkv")
    best_wrapped=$(python3 -c "print(min(x for x in [$t, ${best_wrapped:-$t}]))")
done

python3 - "$frames" "$best_bare" "$best_wrapped" "$(threads_of "$work/bare.mkv")" \
    "$(threads_of "$work/wrapped.mkv")" "$size" "$rounds" <<'PY'
import sys
frames, bare, wrapped = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"input: testsrc2 {sys.argv[6]}, {frames} frames, preset veryfast, best of {sys.argv[7]} rounds")
print(f"libx264 (baseline)  {frames / bare:8.1f} fps  threads={sys.argv[4]}")
print(f"balance_h264        {frames / wrapped:8.1f} fps  threads={sys.argv[5]}  ({bare / wrapped:.3f}x libx264)")
PY
