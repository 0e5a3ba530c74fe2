"""Running the demo's steps: a header for each, its time, and a status that is always one of
done / skipped (with the reason) / failed (with the error). A failing optional step is recorded
and the demo goes on; a step whose input is missing is skipped saying which step it needed.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from edgeclip import console


class Skip(Exception):
    """Raised by a step that cannot run here; the message is the reason printed and reported."""


@dataclass
class StepRecord:
    title: str
    status: str = "pending"
    seconds: float = 0.0
    note: str = ""


class Steps:
    def __init__(self, total: int, debug: bool = False, out=sys.stdout):
        self.total, self.debug, self.out = total, debug, out
        self.records: list[StepRecord] = []

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self, title: str, work, *, needs: dict | None = None, required: bool = False):
        """Run `work()` -> (value, note) as the next step; returns the value, or None unless done."""
        record = StepRecord(title)
        self.records.append(record)
        self.say(f"\n[{len(self.records)}/{self.total}] {title}")
        missing = [name for name, value in (needs or {}).items() if value is None]
        began = time.perf_counter()
        try:
            if missing:
                raise Skip(f"needs {' and '.join(missing)}, which did not complete")
            value, record.note = work()
            record.status = "done"
            return value
        except Skip as skip:
            record.status, record.note = "skipped", str(skip)
            return None
        except Exception as err:
            record.status, record.note = "failed", f"{type(err).__name__}: {err}".strip()
            if required or self.debug:
                raise
            return None
        finally:
            record.seconds = time.perf_counter() - began
            self.say(f"  {record.status} in {record.seconds:.0f} s" + (f": {record.note}" if record.note else ""))

    def as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.records]

    @property
    def failed(self) -> list[StepRecord]:
        return [r for r in self.records if r.status == "failed"]


@contextmanager
def busy(label: str):
    """An elapsed-time bar for work that reports no progress of its own (compiling)."""
    from tqdm import tqdm

    bar = tqdm(desc=f"  {label}", bar_format="{desc}: {elapsed}", file=console.stream(), leave=False)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()
