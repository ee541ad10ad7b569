#!/usr/bin/env bash
# Builds FFmpeg with the balance_h264 / balance_hevc / balance_av1 encoders.
#
#   ffmpeg-patches/build.sh --fetch-debian [RELEASE] --prefix DIR [--config complete|test] [--jobs N]
#   ffmpeg-patches/build.sh --source DIR --prefix DIR [--config complete|test] [--jobs N]
#
# --fetch-debian fetches Debian's FFmpeg source of RELEASE (bookworm: 5.1,
# trixie: 7.1, sid: the newest; default: this host's release from
# /etc/os-release) with a private apt configuration under the prefix (no
# change to the host's apt sources, no root needed). --source takes an
# FFmpeg source tree (an upstream release or Debian's source). The series
# for the tree's version (ffmpeg-patches/nMAJOR.MINOR/) is applied.
#
# --config complete (the default) builds what Debian's package does for a
# user who transcodes: every native format, protocol, filter, decoder and
# encoder, plus libx264, libx265, libsvtav1, libaom, libdav1d, GnuTLS,
# NVENC/NVDEC/CUVID and VA-API, with the balance encoders. --config test
# builds only what the test suite uses (minutes instead of most of an hour
# on two cores).
#
# When the host's nv-codec-headers (ffnvcodec.pc) are older than the FFmpeg
# version needs, the matching headers are fetched from Debian's
# nv-codec-headers source into the prefix.
#
# libgpubalance is found through pkg-config: installed, or a meson build
# directory's uninstalled .pc (set GPUBALANCE_BUILD=DIR to use one).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=""
prefix=""
fetch=0
release=""
config=complete
jobs=$(nproc)

usage() {
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --source) source_dir=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --fetch-debian)
        fetch=1
        shift
        if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
            release=$1
            shift
        fi
        ;;
    --config) config=$2; shift 2 ;;
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
case "$config" in
complete|test) ;;
*) echo "build.sh: --config is complete or test, not '$config'" >&2; exit 2 ;;
esac
if [ "$fetch" = 1 ] && [ -z "$release" ]; then
    release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$release" ] || { echo "build.sh: /etc/os-release names no release; give one (bookworm, trixie, sid)" >&2; exit 2; }
fi
case "$release" in
""|bookworm|trixie|forky|sid|unstable) ;;
*) echo "build.sh: no Debian release '$release' known here; give bookworm, trixie or sid" >&2; exit 2 ;;
esac
[ "$release" = unstable ] && release=sid
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

# A private apt configuration that sees only Debian's deb-src entries of
# the release, so the host's sources and state are left alone.
apt_private() {
    local apt="$prefix/apt"
    local suites="$release"
    case "$release" in
    bookworm|trixie|forky) suites="$release $release-updates" ;;
    esac
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources"
    cat >"$apt/sources/debian.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suites
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    if [ "$release" != sid ]; then
        cat >>"$apt/sources/debian.sources" <<SRC

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    cat >"$apt/apt.conf" <<CONF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$apt/sources";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$apt/lists";
Dir::State::status "/dev/null";
Dir::Cache "$apt/cache";
APT::Sandbox::User "$(id -un)";
CONF
    export APT_CONFIG="$apt/apt.conf"
    if [ ! -f "$apt/updated" ]; then
        apt-get update -q >"$apt/update.log" 2>&1 || {
            cat "$apt/update.log" >&2
            echo "build.sh: apt-get update for Debian $release's sources failed" >&2
            exit 1
        }
        touch "$apt/updated"
    fi
}

# Fetches a Debian source package's upstream tarball and unpacks it into
# DIR/NAME-VERSION; prints that directory. Debian's own changes are not
# needed: the series applies to the upstream release.
fetch_source() {
    local package=$1 work=$2
    rm -rf "$work"
    mkdir -p "$work"
    (cd "$work" && apt-get source -q --download-only -t "$release" "$package" >download.log 2>&1) || true
    local orig
    orig=$(find "$work" -maxdepth 1 -name "${package}_*.orig.tar.*" ! -name '*.asc' | head -n 1)
    [ -n "$orig" ] || { cat "$work/download.log" >&2; echo "build.sh: no $package source for Debian $release" >&2; exit 1; }
    tar -C "$work" -xf "$orig"
    find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1
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
             "the series are for FFmpeg $(ls -d "$here"/n* | sed 's|.*/n||' | tr '\n' ' ')" >&2
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

# Whether the host's nv-codec-headers satisfy one of the ffnvcodec version
# ranges this FFmpeg's configure accepts.
host_ffnvcodec_fits() {
    local spec
    while read -r spec; do
        pkg-config --exists "$spec" && return 0
    done < <(grep -o 'check_pkg_config ffnvcodec "[^"]*"' "$1/configure" | cut -d'"' -f2)
    return 1
}

# Uses the host's nv-codec-headers when configure accepts them, or
# Debian's source of the release's nv-codec-headers, installed into the
# prefix.
nvcodec_headers() {
    local tree=$1 headers
    host_ffnvcodec_fits "$tree" && return
    [ -n "$release" ] || release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    case "$(tree_version "$tree")" in
    7.*|8.*|9.*) [ "$release" = bookworm ] && release=trixie ;; # bookworm's 11.1.5.2 is too old for them
    esac
    echo "build.sh: the host's nv-codec-headers ($(pkg-config --modversion ffnvcodec 2>/dev/null || echo none))" \
         "do not fit FFmpeg $(tree_version "$tree"); using Debian $release's"
    [ -n "${APT_CONFIG:-}" ] || apt_private
    headers=$(fetch_source nv-codec-headers "$prefix/src-nv-codec-headers")
    make -C "$headers" PREFIX="$prefix/nv-codec-headers" install >/dev/null
    export PKG_CONFIG_PATH="$prefix/nv-codec-headers/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
}

# What Debian's package enables for transcoding (codecs and formats come
# from FFmpeg itself: everything native is on by default).
complete_options() {
    echo --enable-gpl --enable-gnutls --enable-libx264 --enable-libx265 --enable-libsvtav1 \
        --enable-libaom --enable-libdav1d --enable-nvenc --enable-nvdec --enable-cuvid --enable-ffnvcodec \
        --enable-vaapi --enable-libdrm --enable-libgpubalance
}

# Only what the wrappers, their children and the test suite use.
test_options() {
    echo --enable-gpl --enable-libx264 --enable-libx265 --enable-libsvtav1 --enable-libdav1d \
        --enable-nvenc --enable-vaapi --enable-ffnvcodec --enable-libgpubalance --disable-everything \
        --enable-encoder=balance_h264,balance_hevc,balance_av1,libx264,libx265,libsvtav1,h264_nvenc,hevc_nvenc,av1_nvenc,h264_vaapi,hevc_vaapi,av1_vaapi,rawvideo,wrapped_avframe,aac \
        --enable-decoder=h264,hevc,libdav1d,rawvideo,wrapped_avframe,aac \
        --enable-parser=h264,hevc,av1,aac \
        --enable-demuxer=mov,matroska,h264,hevc,rawvideo,mpegts,hls,ivf \
        --enable-muxer=mp4,mov,matroska,h264,hevc,null,rawvideo,mpegts,hls,framecrc,ivf \
        --enable-protocol=file,pipe \
        --enable-indev=lavfi \
        --enable-filter=testsrc,testsrc2,scale,format,null,anull,buffer,buffersink,abuffer,abuffersink,aresample,hwupload,split \
        --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,h264_metadata,hevc_metadata,av1_frame_split,av1_frame_merge,av1_metadata
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
    nvcodec_headers "$tree"
    local options
    options=$("${config}_options")
    mkdir -p "$build"
    # shellcheck disable=SC2086 # the options are words
    (cd "$build" && "$tree/configure" --prefix="$prefix" $options \
        --extra-ldflags="$extra_ldflags" --disable-doc --disable-ffplay --disable-debug \
        >"$build/configure.log" 2>&1) || {
        tail -n 20 "$build/configure.log" >&2
        echo "build.sh: configure failed; the whole log is $build/configure.log" >&2
        exit 1
    }
    make -C "$build" -j"$jobs" >"$build/make.log" 2>&1 || {
        grep -B2 -A8 'error:' "$build/make.log" | head -n 60 >&2 || tail -n 30 "$build/make.log" >&2
        echo "build.sh: make failed; the whole log is $build/make.log" >&2
        exit 1
    }
    make -C "$build" install >/dev/null
}

started=$(date +%s)
if [ "$fetch" = 1 ]; then
    apt_private
    source_dir=$(fetch_source ffmpeg "$prefix/src")
fi
[ -n "$source_dir" ] || { echo "build.sh: give --source DIR or --fetch-debian" >&2; usage; }
[ -f "$source_dir/configure" ] || { echo "build.sh: $source_dir is not an FFmpeg source tree" >&2; exit 1; }
version=$(tree_version "$source_dir")
apply_series "$source_dir" "$version"
configure_and_build "$source_dir"
"$prefix/bin/ffmpeg" -hide_banner -encoders 2>/dev/null | grep -E "balance_(h264|hevc|av1)"
echo "built FFmpeg $version ($config configuration) with the balance encoders into $prefix" \
     "in $(( $(date +%s) - started )) s"
