"""Which files `edgeclip-runner --image FOLDER` takes (its ExpandImages): one rule, so the host
tools that mirror the runner (the `--host` verbs, the demo's parity check) pick the same images in
the same order as the board does.

Standard library only: the remote layer imports it.
"""

from __future__ import annotations

import os

IMAGE_SUFFIXES = (b".jpg", b".jpeg", b".png")


def folder_images(folder: str | os.PathLike) -> list[str]:
    """The names the runner takes from `folder`: regular files directly in it whose names end in
    .jpg, .jpeg or .png in any ASCII case, in byte order. OSError when it cannot be listed."""
    def is_image(name: str) -> bool:
        raw = os.fsencode(name).lower()
        return any(len(raw) > len(s) and raw.endswith(s) for s in IMAGE_SUFFIXES)

    names = [name for name in os.listdir(folder) if is_image(name) and os.path.isfile(os.path.join(folder, name))]
    return sorted(names, key=os.fsencode)
