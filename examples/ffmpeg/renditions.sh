#!/bin/sh
# Three renditions of one input in one ffmpeg process: each output has its
# own balance_h264 encoder and so its own lease, placed separately (the
# 1080p one may land on a GPU while the others go to another GPU or the CPU).
#
#   examples/ffmpeg/renditions.sh FFMPEG INPUT OUTDIR
set -eu
ffmpeg=$1
input=$2
out=$3
mkdir -p "$out"
exec "$ffmpeg" -hide_banner -y -i "$input" \
    -filter_complex "[0:v]split=3[a][b][c];[b]scale=1280:720[b720];[c]scale=854:480[c480]" \
    -map "[a]" -c:v balance_h264 -b:v 5M "$out/1080p.mp4" \
    -map "[b720]" -c:v balance_h264 -b:v 3M "$out/720p.mp4" \
    -map "[c480]" -c:v balance_h264 -b:v 1M "$out/480p.mp4"
