#!/usr/bin/env bash
# ffmpeg-patches/build.sh refuses a tree it has no series for, and a tree
# of the right version that the series does not apply to, naming the
# version the series expects; an unknown Debian release or configuration.
set -u
script="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fake_tree() { # DIR RELEASE
    mkdir -p "$1/libavcodec"
    printf '#!/bin/sh\nexit 1\n' >"$1/configure"
    echo "$2" >"$1/RELEASE"
    : >"$1/libavcodec/allcodecs.c"
}

fake_tree "$work/ffmpeg-6.0" 6.0.1
out=$("$script" --source "$work/ffmpeg-6.0" --prefix "$work/p1" 2>&1) && { echo "accepted FFmpeg 6.0"; exit 1; }
grep -q "no patch series for FFmpeg 6.0" <<<"$out" || { echo "unexpected message: $out"; exit 1; }
grep -q "the series are for FFmpeg 5.1 7.1 9.0" <<<"$out" || { echo "no expected versions in: $out"; exit 1; }

fake_tree "$work/ffmpeg-5.1" 5.1.9 # right version, wrong contents
out=$("$script" --source "$work/ffmpeg-5.1" --prefix "$work/p2" 2>&1) && { echo "accepted a tree the series does not fit"; exit 1; }
grep -q "does not apply to .* (FFmpeg 5.1); the series expects FFmpeg 5.1 as released" <<<"$out" ||
    { echo "unexpected message: $out"; exit 1; }

out=$("$script" --prefix "$work/p3" 2>&1) && { echo "ran without a source"; exit 1; }
grep -q "give --source DIR or --fetch-debian" <<<"$out" || { echo "unexpected message: $out"; exit 1; }
out=$("$script" --fetch-debian buster --prefix "$work/p4" 2>&1) && { echo "accepted Debian buster"; exit 1; }
grep -q "no Debian release 'buster' known here; give bookworm, trixie or sid" <<<"$out" ||
    { echo "unexpected message: $out"; exit 1; }

out=$("$script" --fetch-debian --prefix "$work/p5" --config tiny 2>&1) && { echo "accepted --config tiny"; exit 1; }
grep -q "\-\-config is complete or test, not 'tiny'" <<<"$out" || { echo "unexpected message: $out"; exit 1; }
echo "refused as expected"
