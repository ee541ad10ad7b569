#!/usr/bin/env bash
# Measures the strength of the core's test suite instead of assuming it:
# each mutant below is a deliberate bug on one of the core's guarded
# lines. The script copies the tree as it is (tracked files and untracked
# ones git does not ignore) to a scratch directory, then for each mutant
# applies it, builds, runs the core's suites and expects them to FAIL.
#
#   tools/mutation-check.sh [SCRATCH_DIR]     (default build-mutants)
#
# Prints one line a mutant, "caught" or "SURVIVED", and exits non-zero if
# any survived, did not build, or no longer applies (the line it targets
# changed: update its pattern in the table below).
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${1:-build-mutants}

# file | what the bug does | sed expression (must change the file)
mutants=$(cat <<'EOF'
common/src/policy.c|a device takes one session past its limit|s/d->sessions + d->foreign_sessions >= d->session_limit/d->sessions + d->foreign_sessions > d->session_limit/
common/src/policy.c|a pool takes one session past its limit|s/p->sessions >= p->session_limit/p->sessions > p->session_limit/
common/src/ledger.c|a dead holder's lease is never forgotten|s/return fl.l_type != F_UNLCK;/return true;/
common/src/ledger.c|a death inside the critical section is not swept|s/if (ledger->header->in_critical_section) {/if (0) {/
common/src/ledger.c|a header whose CRC fails is read anyway|s/if (layout_crc(&layout) != layout.crc)/if (0)/
common/src/lease.c|a capacity refusal teaches one session too many|s/others = MAX(0, others - 1);/others = MAX(0, others);/
common/src/lease.c|a sim device opens one session past enforce-sessions|s/r->driver_sessions >= (uint32_t)d->enforce_sessions/r->driver_sessions > (uint32_t)d->enforce_sessions/
common/src/lease.c|an unavailable device is offered again at once|s/d->unavailable_until_ns = gpb_now_ns() +/d->unavailable_until_ns = 0 *gpb_now_ns() +/
common/src/probe_nvidia.c|a GPU hidden from CUDA is offered anyway|s/if (ordinal < 0) {/if (ordinal < -1) {/
common/src/encoders.c|ENOMEM from NVENC or VA-API is not a capacity refusal|s/return hardware || backend == GPUBALANCE_BACKEND_SIM/return backend == GPUBALANCE_BACKEND_SIM/
common/src/config.c|an unknown config key is accepted|s/if (!g_strv_contains(allowed, keys\[i\]))/if (0)/
common/src/context.c|a stream wider than the largest dimension is accepted|s/width > GPUBALANCE_MAX_DIMENSION/width > GPUBALANCE_MAX_DIMENSION + 1/
EOF
)

src="$scratch/src"
build="$scratch/build"
rm -rf "$src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$src"
# Only the core is mutated: the GStreamer element and FFmpeg are left out.
meson setup --wipe "$build" "$src" -Dgst_plugin=disabled -Dffmpeg= >/dev/null 2>&1 ||
    meson setup "$build" "$src" -Dgst_plugin=disabled -Dffmpeg= >/dev/null
meson compile -C "$build" >/dev/null

echo "unmutated: running the core's suites once (they must pass)"
if ! meson test -C "$build" --suite core --no-rebuild >/dev/null 2>&1; then
    echo "the core's suites fail without any mutant; fix that first ($build/meson-logs/testlog.txt)" >&2
    exit 1
fi

caught=0
bad=0
while IFS='|' read -r file what expr; do
    [ -n "$file" ] || continue
    cp "$src/$file" "$scratch/original"
    sed -i "$expr" "$src/$file"
    if cmp -s "$src/$file" "$scratch/original"; then
        echo "NO LONGER APPLIES  $file: $what ($expr)"
        bad=$((bad + 1))
        continue
    fi
    if ! meson compile -C "$build" >"$scratch/compile.log" 2>&1; then
        echo "DOES NOT BUILD     $file: $what (see $scratch/compile.log)"
        bad=$((bad + 1))
    elif meson test -C "$build" --suite core --no-rebuild --maxfail 1 >/dev/null 2>&1; then
        echo "SURVIVED           $file: $what"
        bad=$((bad + 1))
    else
        failed=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["result"] not in ("OK", "SKIP"):
        print(r["name"]); break' "$build/meson-logs/testlog.json")
        echo "caught             $file: $what (by $failed)"
        caught=$((caught + 1))
    fi
    cp "$scratch/original" "$src/$file"
done <<<"$mutants"
meson compile -C "$build" >/dev/null

echo "$caught of $((caught + bad)) mutants caught"
[ "$bad" -eq 0 ]
