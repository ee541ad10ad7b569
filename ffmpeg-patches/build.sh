#!/usr/bin/env bash
# Builds FFmpeg with the balance_h264 / balance_hevc encoders.
#
#   ffmpeg-patches/build.sh --source DIR --prefix DIR [--jobs N]
#   ffmpeg-patches/build.sh --fetch-debian --prefix DIR [--jobs N]
#
# --source takes an FFmpeg source tree (an upstream release or Debian's
# `apt-get source ffmpeg`); --fetch-debian fetches Debian's source first
# (adding a deb-src entry if the machine has none). The patch series for
# the tree's version (ffmpeg-patches/nMAJOR.MINOR/) is applied and ffmpeg
# and ffprobe are built with libx264, libx265, NVENC (nv-codec-headers),
# VA-API and the balance encoders, then installed into the prefix.
#
# libgpubalance is found through pkg-config: installed, or a meson build
# directory's uninstalled .pc (set GPUBALANCE_BUILD=DIR to use one).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=""
prefix=""
fetch=0
jobs=$(nproc)

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --source) source_dir=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --fetch-debian) fetch=1; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "build.sh: unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$prefix" ] || { echo "build.sh: --prefix is required" >&2; usage; }
if [ "$fetch" = 1 ] && [ -n "$source_dir" ]; then
    echo "build.sh: give --source or --fetch-debian, not both" >&2
    exit 2
fi
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

fetch_debian_source() {
    local work="$prefix/src"
    if ! apt-get source --print-uris ffmpeg >/dev/null 2>&1; then
        echo "build.sh: adding a deb-src entry for Debian's sources" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo tee /etc/apt/sources.list.d/gpubalance-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        $sudo apt-get update -q >/dev/null
    fi
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$work" && apt-get source -q ffmpeg >/dev/null)
    source_dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'ffmpeg-*' | head -n 1)
    [ -n "$source_dir" ] || { echo "build.sh: apt-get source ffmpeg produced no tree" >&2; exit 1; }
}

tree_version() {
    # RELEASE holds "5.1.9" in release tarballs, Debian's too
    if [ -f "$1/RELEASE" ]; then
        cut -d. -f1,2 <"$1/RELEASE"
    else
        echo "unknown"
    fi
}

apply_series() {
    local tree=$1 version=$2 series="$here/n$2"
    if [ ! -d "$series" ]; then
        echo "build.sh: no patch series for FFmpeg $version in $here;" \
             "this series is for FFmpeg $(ls -d "$here"/n* | sed 's|.*/n||' | tr '\n' ' ')" >&2
        exit 1
    fi
    if grep -q balance_h264 "$tree/libavcodec/allcodecs.c"; then
        echo "build.sh: $tree already has the series applied"
        return
    fi
    for patch in "$series"/*.patch; do
        if ! patch -d "$tree" -p1 --forward --quiet --dry-run <"$patch" >/dev/null; then
            echo "build.sh: $(basename "$patch") does not apply to $tree (FFmpeg $version);" \
                 "the series expects FFmpeg $version as released" >&2
            exit 1
        fi
        patch -d "$tree" -p1 --forward --quiet <"$patch"
        echo "applied $(basename "$patch")"
    done
}

configure_and_build() {
    local tree=$1 build="$prefix/build"
    local extra_ldflags=""
    if [ -n "${GPUBALANCE_BUILD:-}" ]; then
        export PKG_CONFIG_PATH="$GPUBALANCE_BUILD/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
        # runs from that build directory's library without installing it
        extra_ldflags="-Wl,-rpath,$(cd "$GPUBALANCE_BUILD" && pwd)/common"
    fi
    pkg-config --exists gpubalance || {
        echo "build.sh: pkg-config cannot find gpubalance; install it (meson install) or set GPUBALANCE_BUILD" >&2
        exit 1
    }
    mkdir -p "$build"
    # Only what the wrappers, their children and the tests need, so the
    # build takes minutes on two cores.
    (cd "$build" && "$tree/configure" --prefix="$prefix" \
        --enable-gpl --enable-libx264 --enable-libx265 --enable-libgpubalance \
        --enable-nvenc --enable-vaapi --enable-ffnvcodec \
        --extra-ldflags="$extra_ldflags" \
        --disable-doc --disable-ffplay --disable-debug --disable-everything \
        --enable-encoder=balance_h264,balance_hevc,libx264,libx265,h264_nvenc,hevc_nvenc,h264_vaapi,hevc_vaapi,rawvideo,aac \
        --enable-decoder=h264,hevc,rawvideo,aac \
        --enable-parser=h264,hevc,aac \
        --enable-demuxer=mov,matroska,h264,hevc,rawvideo \
        --enable-muxer=mp4,mov,matroska,h264,hevc,null,rawvideo \
        --enable-protocol=file,pipe \
        --enable-indev=lavfi \
        --enable-filter=testsrc,testsrc2,scale,format,null,anull,buffer,buffersink,abuffer,abuffersink,aresample,hwupload,split \
        --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,h264_metadata,hevc_metadata \
        >"$build/configure.log" 2>&1) || {
        tail -n 20 "$build/configure.log" >&2
        echo "build.sh: configure failed; the whole log is $build/configure.log" >&2
        exit 1
    }
    make -C "$build" -j"$jobs" >"$build/make.log" 2>&1 || {
        tail -n 30 "$build/make.log" >&2
        echo "build.sh: make failed; the whole log is $build/make.log" >&2
        exit 1
    }
    make -C "$build" install >/dev/null
}

[ "$fetch" = 1 ] && fetch_debian_source
[ -n "$source_dir" ] || { echo "build.sh: give --source DIR or --fetch-debian" >&2; usage; }
[ -f "$source_dir/configure" ] || { echo "build.sh: $source_dir is not an FFmpeg source tree" >&2; exit 1; }
version=$(tree_version "$source_dir")
apply_series "$source_dir" "$version"
configure_and_build "$source_dir"
"$prefix/bin/ffmpeg" -hide_banner -encoders 2>/dev/null | grep -E "balance_(h264|hevc)"
echo "built FFmpeg $version with the balance encoders into $prefix"
