#!/bin/sh
# Any ffmpeg, unpatched (Debian's own), under `gpubalance exec`: the lease
# is held for exactly as long as ffmpeg runs, and ffmpeg is told which
# encoder to open through the environment (see ../encode-with-lease.sh).
#
#   examples/ffmpeg/exec-unpatched.sh GPUBALANCE INPUT OUTPUT.mp4 WIDTH HEIGHT FPS
set -eu
gpubalance=$1
here=$(dirname "$0")
exec "$gpubalance" exec --codec h264 --width "$4" --height "$5" --fps "$6" --label "$(basename "$3")" -- \
    "$here/../encode-with-lease.sh" -i "$2" -- "$3"
