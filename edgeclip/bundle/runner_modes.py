"""`edgeclip classify | embed | tokenize | index | search`: one of the bundle runner's application modes, run here
exactly as on the device (natively, or under qemu-user with `emulate`), its JSON lines streamed.

The bundle is verified and extracted once and the runner started once for all the images, labels
or texts, so the host answers with the very code, tokenizer and preprocessing the board runs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

from edgeclip.bundle.local import extracted, runner_command
from edgeclip.console import one_line
from edgeclip.errors import BundleError

MODES = ("classify", "embed", "tokenize", "index", "search")


def run_mode(bundle, mode: str, args: list[str], emulate: bool = False, out=None) -> None:
    """Run `edgeclip-runner MODE --bundle DIR ARGS...` on the extracted bundle, copying each line it
    prints to `out` (stdout) as it comes; a failure is one BundleError with the runner's message."""
    if mode not in MODES:
        raise BundleError(f"runner mode {mode!r} unknown; the application modes are {', '.join(MODES)}")
    out = sys.stdout if out is None else out
    with extracted(bundle) as (folder, manifest), tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        command = runner_command(folder, manifest, emulate) + [mode, "--bundle", str(folder), *args]
        # stderr goes to a file, not a pipe: a chatty runner then cannot block while stdout is read.
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, encoding="utf-8",
                              errors="replace") as runner:
            for line in runner.stdout:
                out.write(line)
                out.flush()
        if runner.returncode != 0:
            errors.seek(0)
            raise BundleError(f"the bundle runner's {mode} failed (exit {runner.returncode}): "
                              f"{one_line(errors.read())}")

