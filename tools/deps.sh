#!/usr/bin/env bash
# Installs the Debian packages gpubalance builds, tests and demonstrates
# with, on Debian 12 (bookworm) or Debian 13 (trixie). Run as root (or
# through sudo). Safe to run again.
#
# Names that carry a version differ between releases (clang 14's runtime
# on 12, clang 19's on 13), so only version-independent names are listed:
# libclang-rt-dev is the runtime of the release's default clang.
set -euo pipefail

tested_releases="bookworm trixie"

packages=(
    # build
    meson ninja-build pkg-config gcc clang libclang-rt-dev python3
    # building FFmpeg from Debian's source (apt-get source needs dpkg-source)
    dpkg-dev patch make xz-utils
    # ffmpeg-patches/generate.py and its check build the series with git
    git
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
    # balance_av1's children and AV1 decoding, the complete build's
    # https and DRM, and the series generator (unifdef)
    libsvtav1enc-dev libaom-dev libdav1d-dev libgnutls28-dev libdrm-dev unifdef
    # tests: unshare(1) for the pid-namespace test, valgrind for the
    # wrapper's memcheck test
    util-linux valgrind
    # bench/fleet --plot
    gnuplot-nox
    # tests of the operations side: a real node_exporter scraping
    # `gpubalance metrics --textfile`, a real terminal for `status --watch`,
    # man(1) to check the pages render
    prometheus-node-exporter tmux man-db
)

if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
case " $tested_releases " in
*" $codename "*) echo "deps.sh: installing for Debian $codename" ;;
*) echo "deps.sh: warning: Debian $codename is not one of the releases this list is tested on ($tested_releases); trying anyway" >&2 ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
