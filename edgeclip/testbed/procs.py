"""Stop what the test bed started, by PID: the process and every descendant, children first."""

from __future__ import annotations

import psutil


def kill_tree(pid: int, grace: float = 3.0) -> None:
    try:
        root = psutil.Process(pid)
        family = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        kill_tree(pid)
