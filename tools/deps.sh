#!/usr/bin/env bash
# Installs the Debian 12 packages gpubalance builds, tests and demonstrates
# with. Run as root (or through sudo). Safe to run again.
set -euo pipefail

packages=(
    # build
    meson ninja-build pkg-config gcc clang libclang-rt-14-dev python3
    # building FFmpeg from Debian's source (apt-get source needs dpkg-source)
    dpkg-dev patch make xz-utils
    # the core
    libglib2.0-dev libjson-glib-dev zlib1g-dev
    # discovery: VA-API headers and NVIDIA's codec headers (the NVIDIA
    # libraries themselves are loaded at run time, never linked)
    libva-dev libffmpeg-nvenc-dev
    # the GStreamer element and its tests
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
    gstreamer1.0-plugins-bad gstreamer1.0-libav
    # AV1: plugins-bad has av1enc/av1dec (aom) and av1parse; Debian 12 ships
    # no svtav1enc or dav1ddec. libaom3 is named because the core offers AV1
    # on the software device only where libaom (or SVT-AV1) loads.
    libaom3
    # the FFmpeg wrapper's build, and the demo's encoders
    ffmpeg libx264-dev libx265-dev nasm
    # tests: unshare(1) for the pid-namespace test
    util-linux
    # bench/fleet --plot
    gnuplot-nox
)

if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
