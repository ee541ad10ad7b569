#!/usr/bin/env bash
# Builds gpubalance in a build directory and runs every test suite.
#
#   tools/test.sh [BUILD_DIR] [MESON_SETUP_OPTIONS...]
#
# Default BUILD_DIR is build-test. Prints "N passed, N failed" last and
# exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build-test}
shift || true

if [ -d "$build_dir" ]; then
    meson setup --reconfigure "$build_dir" "$@" >/dev/null
else
    meson setup "$build_dir" "$@"
fi
meson compile -C "$build_dir"

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
