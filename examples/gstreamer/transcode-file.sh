#!/bin/sh
# Transcodes a file to H.264 in MP4 on whatever encoder gpubalance picks
# (NVENC, VA-API or x264), audio copied through.
#
#   examples/gstreamer/transcode-file.sh INPUT OUTPUT.mp4 [KBITS]
# Needs the plugin on GST_PLUGIN_PATH (build/gst-plugin) or installed.
set -eu
input=$1
output=$2
bitrate=${3:-4000}

exec gst-launch-1.0 -m -e \
    filesrc location="$input" ! decodebin name=dec \
    dec. ! queue ! videoconvert ! gpubalanceenc bitrate="$bitrate" speed=balanced ! \
        video/x-h264,stream-format=avc ! queue ! mp4mux name=mux ! filesink location="$output" \
    dec. ! queue ! audioconvert ! avenc_aac ! queue ! mux. 2>&1 |
    grep -E "gpubalance-selected|ERROR|EOS" || true
