#!/usr/bin/env python3
"""Checks that the stand-in NVIDIA libraries serve every symbol that the
installed nv-codec-headers loader asks for.

    loader_symbols.py CC_COMMAND... -- INCLUDE_DIR STUB_DIR

The list comes from the header itself, not from a copy: dynlink_loader.h is
preprocessed for this platform with its LOAD_SYMBOL / LOAD_SYMBOL_OPT
statements renamed so that they survive, which resolves the #if blocks
(Windows-only symbols drop out), and each symbol is attributed to the
loader function it is in and to the library that function dlopens. Only
the loaders that gpubalance calls are checked (cuda, nvenc)."""

import ctypes
import os
import re
import subprocess
import sys
import tempfile

CHECKED_LOADERS = ("cuda", "nvenc")  # common/src/probe_nvidia.c uses these


def marked_header(text):
    """The header with its symbol statements renamed, directives untouched
    (a rename inside the #define of LOAD_SYMBOL would expand them away)."""
    out, in_directive = [], False
    for line in text.splitlines():
        if not in_directive and not line.lstrip().startswith("#"):
            line = re.sub(r"\bLOAD_SYMBOL_OPT\(", "GPB_OPTIONAL_SYMBOL(", line)
            line = re.sub(r"\bLOAD_SYMBOL\(", "GPB_REQUIRED_SYMBOL(", line)
        else:
            in_directive = line.rstrip().endswith("\\")
        out.append(line)
    return "\n".join(out) + "\n"


def loader_symbols(cc, include_dir):
    """{loader: (library, {symbol: "required" | "optional"})}"""
    header_dir = os.path.join(include_dir, "ffnvcodec")
    with open(os.path.join(header_dir, "dynlink_loader.h")) as f:
        text = marked_header(f.read())
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "marked_loader.h")
        with open(copy, "w") as f:
            f.write(text)
        expanded = subprocess.run(cc + ["-E", "-P", "-I", header_dir, "-I", include_dir, copy],
                                  check=True, capture_output=True, text=True).stdout
    loaders = {}
    # Each loader's body runs from its definition to the next one.
    parts = re.split(r"\bint\s+(\w+)_load_functions\s*\(", expanded)
    for name, body in zip(parts[1::2], parts[2::2]):
        library = re.search(r'dlopen\s*[(\s]*"([^"]+)"', body)
        symbols = {}
        for kind, symbol in re.findall(r'GPB_(REQUIRED|OPTIONAL)_SYMBOL\s*\([^;]*?"(\w+)"\s*\)', body):
            symbols[symbol] = kind.lower()
        loaders[name] = (library.group(1) if library else None, symbols)
    return loaders


def main():
    split = sys.argv.index("--")
    cc, (include_dir, stub_dir) = sys.argv[1:split], sys.argv[split + 1:]
    loaders = loader_symbols(cc, include_dir)
    missing, total = [], 0
    for name in CHECKED_LOADERS:
        library, symbols = loaders.get(name, (None, {}))
        # an empty list means the header changed shape: fail, never pass vacuously
        if not library or not symbols:
            print(f"could not read the {name} loader's library and symbols from "
                  f"{include_dir}/ffnvcodec/dynlink_loader.h")
            return 1
        stand_in = ctypes.CDLL(os.path.join(stub_dir, library))
        for symbol, kind in sorted(symbols.items()):
            total += 1
            if not hasattr(stand_in, symbol):
                missing.append(f"{library} stand-in lacks {symbol} ({kind} in the {name} loader)")
        print(f"{name} loader: {library}, {len(symbols)} symbols "
              f"({sum(k == 'required' for k in symbols.values())} required)")
    for line in missing:
        print(line)
    if missing:
        print(f"{len(missing)} of {total} loader symbols missing from tests/stubs")
        return 1
    print(f"the stand-ins serve all {total} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
