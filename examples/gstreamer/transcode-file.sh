#!/bin/sh
# Transcodes a file to H.264 in MP4 on whatever encoder gpubalance picks
# (NVENC, VA-API or x264), its audio (if it has any) to AAC.
#
#   examples/gstreamer/transcode-file.sh INPUT OUTPUT.mp4 [KBITS]
#
# uritranscodebin decodes every stream the file has and encodes each one
# through encodebin, which picks gpubalanceh264enc by its rank for the
# H.264 stream of the profile (and sets its properties from the profile's
# element-properties); a stream the file lacks is simply not encoded, so a
# file without audio works too. Needs the plugin on GST_PLUGIN_PATH
# (build/gst-plugin) or installed.
set -eu
input=$1
output=$2
bitrate=${3:-4000}

uri() {
    case $1 in
    /*) printf 'file://%s' "$1" ;;
    *) printf 'file://%s/%s' "$PWD" "$1" ;;
    esac
}

profile="video/quicktime,variant=iso:video/x-h264|element-properties,bitrate=$bitrate,speed=balanced"
profile="$profile:audio/mpeg,mpegversion=4"
gst-launch-1.0 -m uritranscodebin source-uri="$(uri "$input")" dest-uri="$(uri "$output")" \
    profile="$profile" >"$output.log" 2>&1 || {
    cat "$output.log" >&2
    rm -f "$output.log"
    exit 1
}
grep -E "gpubalance-selected" "$output.log" || true
rm -f "$output.log"
