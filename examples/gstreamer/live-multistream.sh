#!/bin/sh
# A live multi-stream case: N camera-like live sources, each encoded by its
# own gpubalanceenc in one process. gpubalance spreads them over the GPUs
# and falls back to software when the NVENC cap or a budget is reached;
# -m prints every gpubalance-selected placement message.
#
#   examples/gstreamer/live-multistream.sh [N] [SECONDS]
set -eu
n=${1:-4}
seconds=${2:-5}
frames=$((seconds * 30))

branches=""
i=1
while [ "$i" -le "$n" ]; do
    branches="$branches videotestsrc is-live=true num-buffers=$frames pattern=ball ! \
video/x-raw,width=1280,height=720,framerate=30/1 ! gpubalanceenc name=cam$i speed=fast bitrate=3000 ! \
h264parse ! fakesink sync=false"
    i=$((i + 1))
done
# shellcheck disable=SC2086 # the branches are pipeline syntax
exec gst-launch-1.0 -m $branches 2>&1 | grep -E "gpubalance-selected|ERROR|Execution ended"
