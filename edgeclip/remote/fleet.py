"""Run one job (deploy, profile, rollback) on many boards at once with a bounded pool. A board that
fails is recorded with its one-line error and the others carry on; the summary table says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edgeclip.errors import EdgeclipError
from edgeclip.remote.hosts import HostSpec


@dataclass(frozen=True)
class HostOutcome:
    host: str
    ok: bool
    seconds: float
    result: object = None
    error: str | None = None


def run_fleet(hosts: list[HostSpec], job: Callable[[HostSpec], object], jobs: int = 4) -> list[HostOutcome]:
    """Outcomes in the order of `hosts`. Only edgeclip's own errors are caught: a bug still raises."""

    def one(host: HostSpec) -> HostOutcome:
        started = time.monotonic()
        try:
            return HostOutcome(str(host), True, time.monotonic() - started, result=job(host))
        except EdgeclipError as err:
            return HostOutcome(str(host), False, time.monotonic() - started, error=str(err))

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="edgeclip-host") as pool:
        return list(pool.map(one, hosts))


def summary_table(outcomes: list[HostOutcome], describe: Callable[[object], str] = str) -> str:
    """A plain-text table: host, status, seconds, and the result or the error."""
    rows = [("host", "status", "time", "detail")]
    rows += [
        (o.host, "ok" if o.ok else "FAILED", f"{o.seconds:.1f}s", describe(o.result) if o.ok else o.error or "")
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows]
    failed = sum(not o.ok for o in outcomes)
    lines.append(f"{len(outcomes) - failed} of {len(outcomes)} hosts succeeded")
    return "\n".join(lines)
