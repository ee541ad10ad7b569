#!/bin/sh
# Transcodes a file with the balance_h264 wrapper: the stream goes to the
# NVENC GPU, VA-API device or CPU gpubalance chooses, and falls back if that
# encoder refuses. The choice is logged as "selected DEVICE (ENCODER)".
#
#   examples/ffmpeg/transcode.sh FFMPEG INPUT OUTPUT.mp4
# FFMPEG is the patched ffmpeg (ffmpeg-patches/build.sh --prefix P: P/bin/ffmpeg).
set -eu
ffmpeg=$1
exec "$ffmpeg" -hide_banner -i "$2" -c:v balance_h264 -b:v 4M -maxrate 6M -bufsize 8M -g 120 \
    -preset medium -c:a copy "$3"
