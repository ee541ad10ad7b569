#!/usr/bin/env python3
"""Generates the patch series for one FFmpeg release from the one source.

    ffmpeg-patches/generate.py --tree FFMPEG_SOURCE [--out DIR | --check DIR]

FFMPEG_SOURCE is a pristine release tree (upstream's tarball or Debian's
orig tarball). The tree is copied into a scratch git repository and
committed; the edits below are applied in three commits (configure; the
encoders with their build entries, documentation, Changelog and version
bump; a FATE test) and `git format-patch` writes the series. --out writes
it (default: ffmpeg-patches/nMAJOR.MINOR), --check compares it with the
committed series and fails on any difference.

The wrapper's C file is ffmpeg-patches/src/balanceenc.c; its
LIBAVCODEC_VERSION_MAJOR conditionals are resolved for the tree's release
by unifdef(1), so each series carries only its release's FFCodec idioms.
Everything is deterministic (fixed identity and dates, --zero-commit), so
the same tree always gives byte-identical patches.
"""
import argparse
import filecmp
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src")

AUTHOR = "gpubalance developers <gpubalance@users.noreply.invalid>"  # the project's identity; no person signs for it yet
DATE = "2026-11-24T00:00:00+00:00"

# ---- edits, as data -------------------------------------------------------

CONFIGURE_HELP = [
    "  --enable-libgpubalance   enable encoder placement on NVENC, VA-API or",
    "                           software via libgpubalance [no]",
]
CONFIGURE_CHECK = ('enabled libgpubalance     && require_pkg_config libgpubalance "gpubalance >= 0.1.0" '
                   "gpubalance.h gpubalance_context_shared")

# encoder -> children configure may enable with it, most preferred first
ENCODERS = {
    "balance_av1": ["av1_nvenc", "av1_vaapi", "libsvtav1", "libaom_av1"],
    "balance_h264": ["h264_nvenc", "h264_vaapi", "libx264"],
    "balance_hevc": ["hevc_nvenc", "hevc_vaapi", "libx265"],
}

CHANGELOG_LINE = "- balance_h264, balance_hevc and balance_av1 encoders (libgpubalance)"

GENERAL_TEXI = """@section gpubalance

FFmpeg can use libgpubalance to place each encode on an NVENC GPU, a VA-API
device or the CPU, from accounting of the sessions every process on the
host holds. Pass @code{--enable-libgpubalance} to configure; the
@code{balance_h264}, @code{balance_hevc} and @code{balance_av1} encoders
then open the hardware or software encoder libgpubalance chooses.

"""

ENCODERS_TEXI = """@section balance_h264, balance_hevc, balance_av1

Wrapper encoders that place each stream with libgpubalance and open the
encoder it chooses: @code{h264_nvenc}, @code{hevc_nvenc} or
@code{av1_nvenc} on an NVIDIA GPU, @code{h264_vaapi}, @code{hevc_vaapi} or
@code{av1_vaapi} on a VA-API render node, or @code{libx264},
@code{libx265}, @code{libsvtav1} (@code{libaom-av1} when libsvtav1 is not
built) in software. When the chosen encoder fails to open, the failure is
reported to libgpubalance and the next candidate is opened.

Options keep libx264's meaning on every child. Generic options
(@option{b}, @option{maxrate}, @option{bufsize}, @option{g}, @option{bf},
@option{refs}, @option{keyint_min}, @option{qmin}, @option{qmax},
@option{qcomp}, @option{trellis}, @option{threads}, @option{flags}...)
reach the child only when set, so each child keeps its own defaults; one
the chosen child does not use is reported in a warning. The software
children run with their default thread count unless @option{threads} is
set.

@subsection Options
@table @option
@item policy
@samp{balanced} (the least loaded device) or @samp{fill} (the first
device in order with room). Default: the gpubalance configuration's.

@item order
Backends to try, in order, as @samp{nvenc,vaapi,software}.

@item device
Use this device only: @samp{nvenc:0}, @samp{vaapi:renderD128},
@samp{software} or @samp{sim:NAME}.

@item when_full
What to do when every device is full: @samp{software}, @samp{wait} or
@samp{fail}.

@item preset
An x264 preset name, @samp{ultrafast} to @samp{veryslow}, mapped to
NVENC's @samp{p1} to @samp{p7}, VA-API's compression level 7 to 1,
SVT-AV1's preset 12 to 4 and libaom's cpu-used 8 to 1.

@item tune
An x264 tune: passed to libx264 and libx265; @samp{zerolatency} becomes
NVENC's @samp{ull}, VA-API without B-frames and libaom's realtime usage.
A tune the child has no equivalent of is reported in a warning.

@item crf, cq
Constant quality on x264's scale (0 best, 51 worst): libx264/libx265
@option{crf}, NVENC @option{cq}, VA-API @option{global_quality}, SVT-AV1
and libaom @option{crf} scaled to 0..63.

@item qp
Constant quantization parameter.

@item profile, level
Passed to the child by name (@samp{high}, @samp{main10}; @samp{4.1}).

@item x264-params, x264opts, x265-params, svtav1-params, aom-params, forced-idr, sc_threshold, a53cc
Passed to the children that have them.

@item child_opts
Further options for the chosen encoder, as @samp{key=value:key=value}. A
key no candidate encoder has is an error; one the chosen encoder lacks is
reported in a warning.
@end table

"""

FATE_MAK = """FATE_BALANCE-$(call ENCDEC, BALANCE_H264 H264, MATROSKA, LAVFI_INDEV TESTSRC_FILTER SCALE_FILTER FORMAT_FILTER FRAMECRC_MUXER PIPE_PROTOCOL) += fate-balance-h264-lossless
fate-balance-h264-lossless: CMD = balance_lossless h264

FATE_FFMPEG += $(FATE_BALANCE-yes)
fate-balance: $(FATE_BALANCE-yes)
"""

FATE_RUN = """balance_lossless(){
    encfile=$(target_path "${outdir}/${test}.mkv")
    cleanfiles="$cleanfiles ${outdir}/${test}.mkv"
    ffmpeg -f lavfi -i testsrc=size=128x96:rate=25:duration=1 -vf scale,format=yuv420p \\
        -c:v balance_$1 -device software -qp 0 -f matroska -y $encfile || return
    framecrc -i $encfile
}

"""


class Tree:
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, name)

    def read(self, name):
        with open(self.path(name), encoding="utf-8", errors="surrogateescape") as f:
            return f.read().split("\n")

    def write(self, name, lines):
        with open(self.path(name), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n".join(lines))

    def insert_before(self, name, anchor, new_lines, start=None):
        """Inserts new_lines before the first line matching anchor (after
        the first line matching start, when given)."""
        lines = self.read(name)
        i = 0
        if start:
            i = next(n for n, line in enumerate(lines) if re.search(start, line))
        at = next((n for n in range(i, len(lines)) if re.search(anchor, lines[n])), None)
        if at is None:
            sys.exit(f"generate.py: {name} has no line matching {anchor!r}")
        self.write(name, lines[:at] + new_lines + lines[at:])

    def insert_sorted(self, name, start, entry, new_lines):
        """Inserts each of new_lines in order among the lines matching
        entry that follow the line matching start."""
        lines = self.read(name)
        first = next(n for n, line in enumerate(lines) if re.search(start, line)) + 1
        for new in sorted(new_lines):
            at = first
            while at < len(lines) and re.search(entry, lines[at]) and lines[at] < new:
                at += 1
            lines.insert(at, new)
        self.write(name, lines)

    def has(self, name, pattern):
        return any(re.search(pattern, line) for line in self.read(name))


def run(cmd, cwd, **kw):
    return subprocess.run(cmd, cwd=cwd, check=True, **kw)


def git(repo, *args, **kw):
    env = dict(os.environ, GIT_AUTHOR_NAME=AUTHOR.split(" <")[0], GIT_AUTHOR_EMAIL=AUTHOR.split("<")[1][:-1],
               GIT_COMMITTER_NAME=AUTHOR.split(" <")[0], GIT_COMMITTER_EMAIL=AUTHOR.split("<")[1][:-1],
               GIT_AUTHOR_DATE=DATE, GIT_COMMITTER_DATE=DATE, GIT_CONFIG_GLOBAL="/dev/null",
               GIT_CONFIG_NOSYSTEM="1")
    return run(["git", "-c", "core.autocrlf=false", "-c", "gc.auto=0", *args], repo, env=env, **kw)


def commit(repo, subject, body):
    git(repo, "add", "-A")
    message = f"{subject}\n\n{body.strip()}\n\nSigned-off-by: {AUTHOR}\n"
    git(repo, "commit", "-q", "-m", message)


def release_of(tree):
    with open(os.path.join(tree, "RELEASE")) as f:
        return ".".join(f.read().strip().split(".")[:2])


def avcodec_major(tree):
    with open(os.path.join(tree, "libavcodec", "version_major.h")) as f:
        return int(re.search(r"#define LIBAVCODEC_VERSION_MAJOR\s+(\d+)", f.read()).group(1))


def wrapper_source(major):
    """balanceenc.c with the conditionals resolved for this release."""
    result = subprocess.run(["unifdef", f"-DLIBAVCODEC_VERSION_MAJOR={major}", os.path.join(SRC, "balanceenc.c")],
                            capture_output=True, text=True)
    if result.returncode not in (0, 1):  # 1: something was resolved
        sys.exit(f"generate.py: unifdef failed: {result.stderr}")
    return result.stdout


def patch_configure(t):
    t.insert_before("configure", r"^  --enable-libgsm ", CONFIGURE_HELP)
    t.insert_before("configure", r"^    libgsm$", ["    libgpubalance"], start=r'^EXTERNAL_LIBRARY_LIST="')
    t.insert_before("configure", r"^enabled libgsm ", [CONFIGURE_CHECK])


def patch_encoders(t, major):
    known = set(re.findall(r"ff_(\w+)_encoder;", "\n".join(t.read("libavcodec/allcodecs.c"))))
    deps = []
    for name, children in ENCODERS.items():
        deps.append(f'{name}_encoder_deps="libgpubalance"')
        present = [c for c in children if c in known]
        deps.append(f'{name}_encoder_suggest="{" ".join(c + "_encoder" for c in present)}"')
    t.insert_before("configure", r"^libgsm_decoder_deps=", deps)
    t.insert_before("libavcodec/Makefile", r"^OBJS-\$\(CONFIG_LIBGSM_DECODER\)",
                    [f"OBJS-$(CONFIG_{n.upper()}_ENCODER)".ljust(42) + "+= balanceenc.o" for n in ENCODERS])
    t.insert_sorted("libavcodec/allcodecs.c", r"^ \* above is available \*/", r"^extern const FFCodec ff_",
                    [f"extern const FFCodec ff_{n}_encoder;" for n in ENCODERS])
    with open(t.path("libavcodec/balanceenc.c"), "w") as f:
        f.write(wrapper_source(major))
    t.insert_before("doc/encoders.texi", r"^@section Cinepak", ENCODERS_TEXI.split("\n")[:-1])
    general = "doc/general_contents.texi" if os.path.exists(t.path("doc/general_contents.texi")) else "doc/general.texi"
    t.insert_before(general, r"^@section Intel QuickSync Video", GENERAL_TEXI.split("\n")[:-1])
    lines = t.read("Changelog")
    at = next(n for n, line in enumerate(lines) if line.startswith("version ")) + 1
    t.write("Changelog", lines[:at] + [CHANGELOG_LINE] + lines[at:])
    lines = t.read("libavcodec/version.h")
    for n, line in enumerate(lines):
        m = re.match(r"(#define LIBAVCODEC_VERSION_MINOR\s+)(\d+)", line)
        if m:
            lines[n] = m.group(1) + str(int(m.group(2)) + 1).rjust(len(m.group(2)))
        m = re.match(r"(#define LIBAVCODEC_VERSION_MICRO\s+)(\d+)", line)
        if m:
            lines[n] = m.group(1) + "100"
    t.write("libavcodec/version.h", lines)


def patch_fate(t):
    os.makedirs(t.path("tests/ref/fate"), exist_ok=True)
    fate_mak = FATE_MAK
    if t.has("libavcodec/allcodecs.c", r"ff_wrapped_avframe_decoder;"):
        # lavfi hands frames to ffmpeg as wrapped_avframe packets here
        fate_mak = fate_mak.replace("LAVFI_INDEV ", "LAVFI_INDEV WRAPPED_AVFRAME_DECODER ")
    with open(t.path("tests/fate/balance.mak"), "w") as f:
        f.write(fate_mak)
    shutil.copyfile(os.path.join(SRC, "fate", "balance-h264-lossless"), t.path("tests/ref/fate/balance-h264-lossless"))
    t.insert_before("tests/Makefile", r"^include \$\(SRC_PATH\)/tests/fate/bmp\.mak", [
        "include $(SRC_PATH)/tests/fate/balance.mak"])
    t.insert_before("tests/fate-run.sh", r"^null\(\)\{", FATE_RUN.split("\n")[:-1])


def generate(tree, out):
    major = avcodec_major(tree)
    with tempfile.TemporaryDirectory(prefix="gpb-series-") as scratch:
        repo = os.path.join(scratch, "ffmpeg")
        shutil.copytree(tree, repo, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        git(repo, "init", "-q")
        commit(repo, "FFmpeg " + release_of(tree), "The release as published.")
        t = Tree(repo)
        patch_configure(t)
        commit(repo, "configure: add --enable-libgpubalance", """
libgpubalance places video encodes on the NVENC GPUs, VA-API devices or
CPU of a host from shared accounting of every process's sessions. It is
found through pkg-config (gpubalance >= 0.1.0); nothing uses it yet.
""")
        patch_encoders(t, major)
        commit(repo, "avcodec: add balance_h264, balance_hevc and balance_av1 wrapper encoders", """
Each wrapper describes the stream to libgpubalance, takes a lease and
opens the encoder it names: h264/hevc/av1_nvenc on a CUDA device made
on the lease's ordinal (so that the driver's own error, such as out of
memory at the GeForce session cap, comes back as such), h264/hevc/av1_vaapi
on its render node (software frames are uploaded), or libx264, libx265,
libsvtav1 (libaom-av1 second) in software. A child that fails to open is
reported and the next candidate opened; when every candidate fails, one
error lists the attempts.

Options keep libx264's meaning on every child: preset and crf/cq follow
x264's names and scale, translated by libgpubalance's tables; generic
options reach the child only when set (the defaults are sentinels, as in
libx264), flags only in the bits the user changed, so libx264 keeps its
closed GOP; a value the chosen child cannot take is a warning naming
both. child_opts passes further options; a key no candidate has is an
error. AV_CODEC_CAP_OTHER_THREADS keeps the thread count for the child,
so libx264 runs with its default threads. The child's CPB properties and
extradata are passed on; flush uses the child's flush or reopens it.
""")
        patch_fate(t)
        commit(repo, "fate: add a balance_h264 test with a software child", """
Encodes testsrc losslessly with -device software (no GPU or VA-API device
needed) and checks the decoded frames, which do not depend on the x264
version.
""")
        with tempfile.TemporaryDirectory(prefix="gpb-patches-") as patches:
            git(repo, "format-patch", "-q", "--zero-commit", "--no-signature", "-n",
                "-o", patches, "HEAD~3", stdout=subprocess.DEVNULL)
            if out:
                if os.path.isdir(out):
                    shutil.rmtree(out)
                shutil.copytree(patches, out)
                return 0
            return patches_differ(patches)


CHECK_DIR = None

# libavcodec's major version per series, for the check that needs no tree
AVCODEC_MAJOR = {"5.1": 59, "7.1": 61, "9.0": 63}


def series_wrapper(series):
    """balanceenc.c as the series' second patch creates it."""
    patch = next(os.path.join(series, n) for n in sorted(os.listdir(series)) if n.startswith("0002-"))
    lines, inside = [], False
    with open(patch) as f:
        for line in f:
            if line.startswith("+++ b/libavcodec/balanceenc.c"):
                inside = True
            elif inside and (line.startswith("diff --git") or line == "-- \n"):
                break
            elif inside and line.startswith("+"):
                lines.append(line[1:])
    return "".join(lines)


def find_tarball(version):
    # build.sh leaves them in PREFIX/src; tools/test.sh's prefixes are
    # build-ffmpeg/RELEASE-KEY
    for root in filter(None, os.environ.get("GPB_FFMPEG_SOURCES", "").split(":")):
        for pattern in ("*", "*/src/*", "*/*/src/*"):
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                if re.fullmatch(rf"ffmpeg_{re.escape(version)}\.\d+\.orig\.tar\.\w+", os.path.basename(path)):
                    return path
    return None


def verify_all():
    """Every committed series carries the one source's balanceenc.c for its
    release; where a release tarball is at hand (GPB_FFMPEG_SOURCES, as
    build.sh leaves them), the whole series is regenerated and compared."""
    global CHECK_DIR
    status = 0
    for name in sorted(n for n in os.listdir(HERE) if re.fullmatch(r"n\d+\.\d+", n)):
        version = name[1:]
        if version not in AVCODEC_MAJOR:
            print(f"generate.py: {name} has no libavcodec version in AVCODEC_MAJOR", file=sys.stderr)
            return 1
        if series_wrapper(os.path.join(HERE, name)) != wrapper_source(AVCODEC_MAJOR[version]):
            print(f"generate.py: {name}'s balanceenc.c is not src/balanceenc.c for {version}; "
                  "run generate.py again", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: balanceenc.c is src/balanceenc.c resolved for FFmpeg {version}")
        tarball = find_tarball(version)
        if not tarball:
            print(f"{name}: no FFmpeg {version} tarball at hand; whole-series check skipped")
            continue
        with tempfile.TemporaryDirectory(prefix="gpb-tree-") as scratch:
            subprocess.run(["tar", "-C", scratch, "-xf", tarball], check=True)
            tree = os.path.join(scratch, os.listdir(scratch)[0])
            CHECK_DIR = os.path.join(HERE, name)
            status |= generate(tree, None)
    return status


def patches_differ(patches):
    names = sorted(os.listdir(patches))
    committed = sorted(n for n in os.listdir(CHECK_DIR) if n.endswith(".patch"))
    if names != committed:
        print(f"generate.py: {CHECK_DIR} holds {committed}, the generator makes {names}", file=sys.stderr)
        return 1
    bad = [n for n in names if not filecmp.cmp(os.path.join(patches, n), os.path.join(CHECK_DIR, n), shallow=False)]
    for n in bad:
        subprocess.run(["diff", "-u", os.path.join(CHECK_DIR, n), os.path.join(patches, n)])
    if bad:
        print(f"generate.py: {', '.join(bad)} differ from the generator's output; run it again", file=sys.stderr)
        return 1
    print(f"{CHECK_DIR}: the committed series is the generator's output")
    return 0


def main():
    global CHECK_DIR
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", help="pristine FFmpeg release tree")
    parser.add_argument("--verify-all", action="store_true",
                        help="check every committed series against the source (and its tarball, when at hand)")
    parser.add_argument("--out", help="where to write the series (default ffmpeg-patches/nX.Y)")
    parser.add_argument("--check", metavar="DIR", help="compare with the series in DIR instead of writing")
    args = parser.parse_args()
    if args.verify_all:
        return verify_all()
    if not args.tree:
        parser.error("--tree is required")
    if not os.path.exists(os.path.join(args.tree, "RELEASE")):
        sys.exit(f"generate.py: {args.tree} is not an FFmpeg release tree (no RELEASE file)")
    if args.check:
        CHECK_DIR = args.check
        return generate(args.tree, None)
    return generate(args.tree, args.out or os.path.join(HERE, "n" + release_of(args.tree)))


if __name__ == "__main__":
    sys.exit(main())
