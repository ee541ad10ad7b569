#!/usr/bin/env bash
# Builds gpubalance in a build directory and runs every test suite,
# including the FFmpeg wrappers' tests against FFmpeg patched and built
# from Debian's source by ffmpeg-patches/build.sh (its test configuration;
# built once, then cached in build-ffmpeg/ until the series or the script
# changes): against the host release's FFmpeg (5.1 on Debian 12, 7.1 on
# Debian 13). GPB_FFMPEG_RELEASES="bookworm sid" picks others (sid: the
# newest release, 9.0, whose suite passes too; CI runs it so);
# GPB_FFMPEG_CONFIG=complete builds the first one as the README does (CI
# does too).
#
#   tools/test.sh [BUILD_DIR] [MESON_SETUP_OPTIONS...]
#
# Default BUILD_DIR is build-test. GPB_WITH_FFMPEG=0 skips the FFmpeg
# suite. Prints "N passed, N failed" last and exits non-zero if anything
# failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build-test}
shift || true

# -Dtest_hooks=true: the stand-in suite's programs find the stand-in NVIDIA
# driver tree through GPUBALANCE_NVIDIA_ROOT, which only test builds read.
if [ -d "$build_dir" ]; then
    meson setup --reconfigure "$build_dir" -Dtest_hooks=true "$@" -Dffmpeg= >/dev/null
else
    meson setup "$build_dir" -Dtest_hooks=true "$@"
fi
meson compile -C "$build_dir"

# The FFmpeg releases whose series are tested here by default: the host
# release's own (5.1 on Debian 12, 7.1 on Debian 13). The 9.0 suite passes
# on Debian 12 too (GPB_FFMPEG_RELEASES="bookworm sid"; .ci/run sets it).
host_release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
default_releases="$host_release"
releases=${GPB_FFMPEG_RELEASES:-$default_releases}

# Builds (once, cached by the series and build.sh) the test configuration
# of FFmpeg from Debian's source of a release; prints its prefix.
ffmpeg_for() {
    local release=$1 config=$2 key prefix
    key=$(cat ffmpeg-patches/build.sh ffmpeg-patches/n*/*.patch | sha256sum | cut -c1-16)
    prefix="$PWD/build-ffmpeg/$release-$config-$key"
    if [ ! -x "$prefix/bin/ffmpeg" ]; then
        echo "building FFmpeg ($config configuration) from Debian $release's source into $prefix (once)" >&2
        GPUBALANCE_BUILD="$PWD/$build_dir" ffmpeg-patches/build.sh --fetch-debian "$release" \
            --config "$config" --prefix "$prefix" >&2
    fi
    echo "$prefix"
}

status=0
logs=()
if [ "${GPB_WITH_FFMPEG:-1}" != 0 ]; then
    # GPB_FFMPEG_CONFIG=complete: the first release gets the README's
    # complete build (CI builds it once that way), the others the test one
    first=1
    for release in $releases; do
        config=test
        [ "$first" = 1 ] && config=${GPB_FFMPEG_CONFIG:-test}
        prefix=$(ffmpeg_for "$release" "$config")
        meson configure "$build_dir" -Dffmpeg="$prefix"
        meson compile -C "$build_dir"
        if [ "$first" = 1 ]; then
            # everything, against the first release's FFmpeg
            meson test -C "$build_dir" --print-errorlogs --num-processes "$(nproc)" || status=$?
            first=0
        else
            echo "=== the FFmpeg suite against Debian $release's FFmpeg"
            meson test -C "$build_dir" --print-errorlogs --num-processes "$(nproc)" --suite ffmpeg || status=$?
        fi
        cp "$build_dir/meson-logs/testlog.json" "$build_dir/meson-logs/testlog-$release.json"
        logs+=("$build_dir/meson-logs/testlog-$release.json")
    done
else
    echo "skipped: the FFmpeg build and its suite (GPB_WITH_FFMPEG=0)"
    meson test -C "$build_dir" --print-errorlogs --num-processes "$(nproc)" || status=$?
    logs+=("$build_dir/meson-logs/testlog.json")
fi

# meson's summary, as the plain closing line that any reader understands
python3 - "${logs[@]}" <<'PY'
import json, sys
counts = {}
for log in sys.argv[1:]:
    for line in open(log):
        result = json.loads(line)["result"]
        counts[result] = counts.get(result, 0) + 1
passed = counts.get("OK", 0)
skipped = counts.get("SKIP", 0)
failed = sum(n for r, n in counts.items() if r not in ("OK", "SKIP", "EXPECTEDFAIL"))
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
