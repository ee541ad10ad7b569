#!/bin/sh
# Runs one ffmpeg encode on whatever gpubalance chose; meant to run under
# `gpubalance exec`, which holds the lease for exactly as long as this
# script (and the ffmpeg it becomes) lives, and exports:
#   GPUBALANCE_DEVICE, GPUBALANCE_BACKEND, GPUBALANCE_FFMPEG_ENCODER,
#   GPUBALANCE_RENDER_NODE (vaapi), CUDA_VISIBLE_DEVICES (nvenc, narrowed
#   to the chosen GPU, so it is CUDA device 0 for ffmpeg)
#
#   encode-with-lease.sh INPUT_ARGS... -- OUTPUT
# Example:
#   gpubalance exec -c h264 -w 1280 --height 720 -f 30 -- \
#       examples/encode-with-lease.sh -i in.mkv -- out.mp4
set -eu

input=""
while [ "$1" != "--" ]; do
    input="$input $1"
    shift
done
shift
output=$1

case "$GPUBALANCE_BACKEND" in
nvenc)
    set -- -c:v "$GPUBALANCE_FFMPEG_ENCODER" -gpu 0 -preset p4 ;;
vaapi)
    set -- -vaapi_device "$GPUBALANCE_RENDER_NODE" -vf format=nv12,hwupload -c:v "$GPUBALANCE_FFMPEG_ENCODER" ;;
*)  # software, and sim devices (accounted like hardware, encoded in software)
    set -- -c:v "$GPUBALANCE_FFMPEG_ENCODER" -preset veryfast ;;
esac

[ -n "${FARM_READY:-}" ] && echo "$GPUBALANCE_DEVICE" >>"$FARM_READY"
# shellcheck disable=SC2086 # $input is a list of arguments on purpose
exec ffmpeg -hide_banner -loglevel error -nostdin -y $input "$@" "$output"
