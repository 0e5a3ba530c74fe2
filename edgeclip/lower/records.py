"""Tuning records on disk: one meta_schedule JSON database per target, `schedules/<target>/`.

The two files are meta_schedule's own (`JSONDatabase(work_dir=...)` opens them): a workload
table (one line per unscheduled PrimFunc) and a record table (`[workload index, record]`
lines). A record carries the TVM target it was measured on (CPU, thread count), and a build
applies only records of its own target, so one directory serves e.g. 1- and 2-thread builds.

Writes merge: the best record per (workload, target) survives, old workloads keep their line
numbers and new ones are appended. Each file is replaced atomically, workloads first, so a
crash between the two replacements leaves old records pointing at an unchanged prefix. A merge
holds an exclusive lock on the directory, so two tunes finishing together both keep their records.
`$EDGECLIP_RECORDS_DIR` replaces the shipped `schedules/` root (tuning a machine of your own
without writing into the installed package).
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from edgeclip.errors import KernelError
from edgeclip.fsutil import fsync_dir, write_synced
from edgeclip.lower.knobs import register_intrinsics_in

ROOT_ENV = "EDGECLIP_RECORDS_DIR"
WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
LOCK = ".lock"
FAILED_SECS = 1e9  # meta_schedule marks a failed run with 1e10 seconds


def records_root() -> Path:
    """`$EDGECLIP_RECORDS_DIR`, else the installed `edgeclip.schedules` package directory."""
    override = os.environ.get(ROOT_ENV)
    if override:
        return Path(override)
    import edgeclip.schedules

    return Path(edgeclip.schedules.__file__).parent


def records_dir(target_name: str, root: Path | None = None) -> Path:
    return (root if root is not None else records_root()) / target_name


def target_key(target) -> str:
    """What a record's target must equal to apply: the whole TVM target, thread count included."""
    return json.dumps(dict(tvm.target.Target(target).export()), sort_keys=True, default=str)


def mean_secs(record) -> float:
    secs = [float(s) for s in (record.run_secs or [])]
    return sum(secs) / len(secs) if secs else float("inf")


def _lines(path: Path) -> list:
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise _corrupt(path, f"line {number} is not JSON ({err.msg})") from err
    return rows


def _corrupt(path: Path, problem: str) -> KernelError:
    return KernelError(f"tuning records {path} are corrupt: {problem}; delete {path.parent} "
                       "(or restore it from git) and re-run `edgeclip tune`")


def read(directory: Path) -> tuple[list, list]:
    """(workloads in file order, [(workload index, TuningRecord)]) from a record directory."""
    workload_path, record_path = directory / WORKLOADS, directory / RECORDS
    workloads = []
    for number, row in enumerate(_lines(workload_path), 1):
        try:
            workloads.append(ms.database.Workload.from_json(row))
        except Exception as err:  # noqa: BLE001 - TVM raises its own error types for bad IR JSON
            raise _corrupt(workload_path, f"workload on line {number} does not parse ({type(err).__name__})") from err
    if record_path.is_file():
        register_intrinsics_in(record_path.read_text(encoding="utf-8"))
    records = []
    for number, row in enumerate(_lines(record_path), 1):
        try:
            index, body = row
            records.append((index, ms.database.TuningRecord.from_json(body, workloads[index])))
        except Exception as err:  # noqa: BLE001
            raise _corrupt(record_path, f"record on line {number} does not parse ({type(err).__name__})") from err
    return workloads, records


def load(target, target_name: str, root: Path | None = None) -> ms.database.Database | None:
    """The records of `target_name` measured on `target`, as an in-memory database; None if none."""
    _, records = read(records_dir(target_name, root))
    key = target_key(target)
    chosen = [r for _, r in records if r.target is not None and target_key(r.target) == key]
    if not chosen:
        return None
    db = ms.database.MemoryDatabase()
    for record in chosen:
        workload = db.commit_workload(record.workload.mod)
        db.commit_tuning_record(ms.database.TuningRecord(record.trace, workload, record.run_secs, record.target,
                                                         record.args_info))
    return db


def merge(new_records: list, target_name: str, root: Path | None = None) -> Path:
    """Add `new_records` to the store of `target_name`, keeping the best per (workload, target)."""
    directory = records_dir(target_name, root)
    with _locked(directory):
        workloads, old = read(directory)
        texts = [json.dumps(w.as_json()) for w in workloads]
        best: dict[tuple[int, str], object] = {}
        for index, record in old:
            best[(index, target_key(record.target))] = record
        for record in new_records:
            if mean_secs(record) >= FAILED_SECS:
                continue
            text = json.dumps(record.workload.as_json())
            if text not in texts:
                texts.append(text)
            slot = (texts.index(text), target_key(record.target))
            if slot not in best or mean_secs(record) < mean_secs(best[slot]):
                best[slot] = record
        _replace(directory / WORKLOADS, "".join(t + "\n" for t in texts))
        lines = (json.dumps([slot[0], best[slot].as_json()]) + "\n" for slot in sorted(best))
        _replace(directory / RECORDS, "".join(lines))
    return directory


@contextmanager
def _locked(directory: Path):
    """Read-merge-write under an exclusive lock: without it, of two tunes merging at once, the
    later write would drop the earlier one's new records."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write_synced(tmp, text.encode("utf-8"))
    os.replace(tmp, path)
    fsync_dir(path.parent)
