"""C programs built against an extracted bundle's libedgeclip, as docs/device-runtime.md says."""

from __future__ import annotations

import subprocess
from pathlib import Path


def link_against_bundle(compiler: str, source: Path, folder: Path, name: str) -> Path:
    """Compiles `source` (C99, warnings as errors) into the bundle's bin/NAME with RUNPATH
    $ORIGIN/../lib, so it finds lib/libedgeclip.so wherever the bundle is copied."""
    binary = folder / "bin" / name
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", str(source), "-I", str(folder / "include"),
                    "-L", str(folder / "lib"), "-ledgeclip", "-Wl,-rpath,$ORIGIN/../lib", "-o", str(binary)],
                   check=True, timeout=120)
    return binary
