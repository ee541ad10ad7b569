#!/usr/bin/env bash
# Builds gpubalance in a build directory and runs every test suite,
# including the FFmpeg wrappers' tests against an FFmpeg patched and built
# from Debian's source by ffmpeg-patches/build.sh (built once, then cached
# in build-ffmpeg/ until the series or the script changes).
#
#   tools/test.sh [BUILD_DIR] [MESON_SETUP_OPTIONS...]
#
# Default BUILD_DIR is build-test. GPB_WITH_FFMPEG=0 skips the FFmpeg
# suite (said here, and counted as a skipped test). Prints "N passed,
# N failed" last and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build-test}
shift || true

if [ -d "$build_dir" ]; then
    meson setup --reconfigure "$build_dir" "$@" -Dffmpeg= >/dev/null
else
    meson setup "$build_dir" "$@"
fi
meson compile -C "$build_dir"

if [ "${GPB_WITH_FFMPEG:-1}" != 0 ]; then
    key=$(cat ffmpeg-patches/build.sh ffmpeg-patches/n*/*.patch | sha256sum | cut -c1-16)
    prefix="$PWD/build-ffmpeg/$key"
    if [ ! -x "$prefix/bin/ffmpeg" ]; then
        echo "building FFmpeg with the balance encoders into $prefix (a few minutes, once)"
        GPUBALANCE_BUILD="$PWD/$build_dir" ffmpeg-patches/build.sh --fetch-debian --prefix "$prefix"
    fi
    meson configure "$build_dir" -Dffmpeg="$prefix"
    meson compile -C "$build_dir"
else
    echo "skipped: the FFmpeg build and its suite (GPB_WITH_FFMPEG=0)"
fi

status=0
meson test -C "$build_dir" --print-errorlogs --num-processes "$(nproc)" || status=$?

# meson's summary, as the plain closing line that any reader understands
python3 - "$build_dir/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {}
for line in open(sys.argv[1]):
    result = json.loads(line)["result"]
    counts[result] = counts.get(result, 0) + 1
passed = counts.get("OK", 0)
skipped = counts.get("SKIP", 0)
failed = sum(n for r, n in counts.items() if r not in ("OK", "SKIP", "EXPECTEDFAIL"))
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
