"""`edgeclip classify | embed | tokenize | index | search BUNDLE --host BOARD`: the runner's application modes run on
the board, by the version `edgeclip deploy` installed, on copies of the caller's files. A board
whose CPU cannot run the bundle's code is refused first, with the runner's own line.

The bundle must already be the board's current version, intact (every member's sha256 checked on
the board); otherwise the run stops with one line saying to deploy it. It does not deploy by itself:
deploying switches what is current on the board for everyone using it and moves the old version to
`previous`, which a verb that only answers questions must not do behind the user's back.

Each run gets a private folder, `mktemp -d ROOT/.staging/run.XXXXXX`: the input files are copied
there over SFTP under their own names, the runner's path arguments point at the copies, every
runner argument is shell-quoted, and the runner's JSON lines come back with the copies' paths put
back as the caller's. `embed --out` is written on the board, fetched, checked against the shape
the runner announced (float32 [N, D], N the inputs sent), then written here atomically; so is
`index --out`, checked as an index of N items (its image paths, the copies', put back as the
caller's before it is written). `search --index` sends the caller's index for the run. The
folder is removed when the run ends, failed or not; one a dead link left behind is removed by a
later run once it is a day old.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edgeclip.console import one_line
from edgeclip.errors import RemoteError
from edgeclip.formats import index as index_format
from edgeclip.formats.bundle import read_manifest, sha256_file
from edgeclip.formats.layout import VERSIONS, version_of
from edgeclip.formats.npy import NpyError, check_matrix, max_matrix_bytes
from edgeclip.formats.runner_inputs import folder_images
from edgeclip.fsutil import fsync_dir, write_synced
from edgeclip.remote.connect import CommandResult, Connection, SshOptions, connect, quote_command
from edgeclip.remote.deploy import Layout, check_cpu, check_name, installed_state
from edgeclip.remote.diagnose import explain
from edgeclip.remote.hosts import HostSpec
from edgeclip.remote.probe import probe
from edgeclip.remote.upload import put_file, sftp_errors

UPLOADED = ("--image", "--labels-file", "--text-file", "--index")  # runner flags whose value is a file to send
OUT = "--out"
OUT_COPY = "out.file"
PATH_KEYS = ("image", "out")  # the fields of the runner's JSON lines that hold a path
RUNNER_STATUSES = (2, 3)  # the runner's own failures (usage, bad input): its message is the error
MAX_DIM = 1 << 16
STALE_MINUTES = 24 * 60

RUN_DIR_SCRIPT = r"""
staging=$1 stale=$2
mkdir -p "$staging" && chmod 700 "$staging" || exit 1
find "$staging" -maxdepth 1 -type d -name 'run.*' -mmin "+$stale" -exec rm -rf {} + 2>/dev/null
mktemp -d "$staging/run.XXXXXX"
"""


@dataclass
class Inputs:
    """The runner's arguments with each file argument replaced by its copy's path in the run
    folder (relative to it here), and what to send."""

    args: list[tuple[str, str]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)  # made in the run folder first, in order
    files: list[tuple[str, str]] = field(default_factory=list)  # (the caller's file, its copy)
    local_of: dict[str, str] = field(default_factory=dict)  # copy -> the caller's path
    out: str | None = None  # the caller's --out
    rows: int = 0  # how many inputs the runner embeds: the rows --out must have

    def argv(self, run_dir: str) -> list[str]:
        return [word for flag, value in self.args
                for word in (flag, f"{run_dir}/{value}" if flag in (*UPLOADED, OUT) else value)]


def plan_inputs(pairs: list[tuple[str, str]]) -> Inputs:
    """Check every local file before connecting; a folder of images is sent as the files the runner
    would take from it, so it lists the same names in the same order on the board."""
    plan = Inputs()
    for flag, value in pairs:
        if flag == OUT:
            plan.out = os.path.abspath(value)
            if not os.path.isdir(os.path.dirname(plan.out)):
                raise RemoteError(f"the folder of --out {plan.out} does not exist; create it first")
            plan.args.append((flag, OUT_COPY))
            plan.local_of[OUT_COPY] = plan.out
            continue
        if flag not in UPLOADED:
            plan.args.append((flag, value))
            plan.rows += flag == "--text"
            continue
        local, slot = os.path.abspath(value), str(len(plan.folders))
        plan.folders.append(slot)
        if flag == "--image" and os.path.isdir(local):
            names = image_names(local)
            plan.files += [(os.path.join(local, name), f"{slot}/{name}") for name in names]
            plan.local_of.update({f"{slot}/{name}": os.path.join(local, name) for name in names})
            plan.rows += len(names)
            copy = slot
        else:
            copy = f"{slot}/{_sendable_name(local)}"
            plan.files.append((local, copy))
            plan.rows += _text_lines(local) if flag == "--text-file" else 1
        plan.local_of[copy] = local
        plan.args.append((flag, copy))
    return plan


def image_names(folder: str) -> list[str]:
    """The images the runner takes from `folder`, each checked to be sendable to the board."""
    try:
        names = folder_images(folder)
    except OSError as err:
        raise RemoteError(f"cannot list the folder {folder} ({err.strerror}); check its permissions") from err
    return [_sendable_name(os.path.join(folder, name)) for name in names]


def run_on_board(bundle, host: HostSpec | str, mode: str, pairs: list[tuple[str, str]],
                 options: SshOptions | None = None, out: TextIO | None = None) -> None:
    """Run `edgeclip-runner MODE` with the runner arguments `pairs` on the board, in the installed
    version of `bundle`, copying its JSON lines to `out` (stdout) as they come."""
    options = options or SshOptions()
    out = sys.stdout if out is None else out
    spec = HostSpec.parse(host) if isinstance(host, str) else host
    manifest = read_manifest(bundle)
    name = check_name(manifest.get("name"), bundle)
    sha = sha256_file(bundle)
    inputs = plan_inputs(pairs)
    with connect(spec, options) as conn:
        info = probe(conn)
        if mode != "tokenize":  # tokenizing loads no compiled module
            named = tuple(value for flag, value in pairs if flag == "--variant") or None
            check_cpu(bundle, manifest, info, str(spec), named)
        layout = Layout(info.home, name)
        _require_installed(conn, layout, sha, manifest, bundle, str(spec))
        folder = f"{layout.app}/{VERSIONS}/{version_of(sha)}"
        run_dir = _make_run_dir(conn, layout)
        try:
            local_of = {f"{run_dir}/{copy}": local for copy, local in inputs.local_of.items()}
            _send(conn, inputs, run_dir)
            answers = Answers(out, local_of, hold_out=inputs.out is not None)
            argv = [f"{folder}/{manifest['runner']}", mode, "--bundle", folder, *inputs.argv(run_dir)]
            result = conn.run_script('exec "$@"', tuple(argv), timeout=None, on_stdout=answers.feed)
            answers.finish()
            if not result.ok:
                raise _runner_failed(result, mode, str(spec), local_of)
            if inputs.out is not None:
                fetch = _fetch_index if mode == "index" else _fetch_out
                fetch(conn, f"{run_dir}/{OUT_COPY}", inputs, answers.out_row, local_of, str(spec))
                answers.write(answers.out_row)
        finally:
            _remove(conn, run_dir)


class Answers:
    """The runner's stdout cut into lines; a line naming a copy is rewritten to name the caller's
    file, any other line passes unchanged. With `hold_out` the `{"out": ...}` line waits until the
    .npy is written here, as the local runner prints it only once its file exists."""

    def __init__(self, out: TextIO, local_of: dict[str, str], hold_out: bool):
        self.stream, self.local_of, self.hold_out = out, local_of, hold_out
        self.pending = b""
        self.out_row: dict | None = None

    def feed(self, chunk: bytes) -> None:
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            self._line(line.decode("utf-8", errors="replace"))

    def finish(self) -> None:
        if self.pending:
            self._line(self.pending.decode("utf-8", errors="replace"))
            self.pending = b""

    def write(self, row: dict) -> None:
        self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.stream.flush()

    def _line(self, text: str) -> None:
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not any(isinstance(row.get(key), str) for key in PATH_KEYS):
            self.stream.write(text + "\n")
            self.stream.flush()
            return
        row = {key: self.local_of.get(value, value) if key in PATH_KEYS and isinstance(value, str) else value
               for key, value in row.items()}
        if self.hold_out and "out" in row:
            self.out_row = row
        else:
            self.write(row)


def _require_installed(conn: Connection, layout: Layout, sha: str, manifest: dict, bundle, host: str) -> None:
    state = installed_state(conn, layout, sha, manifest)
    if state.intact:
        return
    version = version_of(sha)
    deploy = f"run `edgeclip deploy {quote_command([str(bundle)])} --host {quote_command([host])}`"
    if state.current is None:
        raise RemoteError(f"{host}: {layout.name} is not installed there; {deploy} first")
    if state.current != version:
        raise RemoteError(f"{host}: the installed {layout.name} is version {state.current}, not this bundle's "
                          f"{version}; {deploy} first")
    raise RemoteError(f"{host}: the installed copy of {layout.name} {version} is damaged (a file's sha256 differs); "
                      f"{deploy} to repair it")


def _make_run_dir(conn: Connection, layout: Layout) -> str:
    result = conn.run_script(RUN_DIR_SCRIPT, (layout.staging, str(STALE_MINUTES)), timeout=60)
    run_dir = result.out.strip()
    if not result.ok or not run_dir.startswith(f"{layout.staging}/run."):
        raise explain(result, f"making a folder in {layout.staging}", str(conn.endpoint))
    return run_dir


def _send(conn: Connection, inputs: Inputs, run_dir: str) -> None:
    sftp = conn.sftp()
    for folder in inputs.folders:
        with sftp_errors(conn, f"{run_dir}/{folder}", "making"):
            sftp.mkdir(f"{run_dir}/{folder}", 0o700)
    for local, copy in inputs.files:
        put_file(conn, Path(local), f"{run_dir}/{copy}")


def _runner_failed(result: CommandResult, mode: str, host: str, local_of: dict[str, str]) -> RemoteError:
    """The runner's own message with the copies' paths put back as the caller's."""
    message = result.err
    for copy in sorted(local_of, key=len, reverse=True):
        message = message.replace(copy, local_of[copy])
    if result.exit_status in RUNNER_STATUSES:
        return RemoteError(f"the bundle runner's {mode} failed on {host} (exit {result.exit_status}): {one_line(message)}")
    return explain(dataclasses.replace(result, stderr=message.encode()), f"running the bundle runner's {mode}", host)


def _announced(row: dict | None, rows: int, host: str, mode: str) -> int:
    """The dimension the runner's `{"out": ..., "count": N, "dim": D}` line gives, N the inputs sent."""
    count, dim = (row or {}).get("count"), (row or {}).get("dim")
    if count != rows or not isinstance(dim, int) or not 0 < dim <= MAX_DIM:
        raise RemoteError(f"{host}: the runner's {mode} --out answered {str(row)[:200]}, not {rows} rows of at most "
                          f"{MAX_DIM} dimensions; is the bundle's runner from this edgeclip version?")
    return dim


def _fetch_bounded(conn: Connection, remote: str, limit: int, what: str, bound: str, local: str, host: str) -> bytes:
    """The board's file, refused unread when it is over `limit` bytes (`bound` says what sets it)."""
    with sftp_errors(conn, remote, "fetching"):
        sftp = conn.sftp()
        size = sftp.stat(remote).st_size or 0
        if size > limit:
            raise RemoteError(f"{host}: the {what} the board wrote is {size} bytes, over the {limit} that {bound}; "
                              f"nothing was written to {local}")
        with sftp.open(remote, "rb") as handle:
            handle.prefetch(size)
            return handle.read(size)


def _fetch_out(conn: Connection, remote: str, inputs: Inputs, row: dict | None, local_of: dict, host: str) -> None:
    """The board's .npy, bounded before it is read and checked before it is written here."""
    rows, local = inputs.rows, inputs.out
    dim = _announced(row, rows, host, "embed")
    data = _fetch_bounded(conn, remote, max_matrix_bytes(rows, dim), "embeddings file", f"{rows} x {dim} float32 take",
                          local, host)
    try:
        check_matrix(data, rows, dim)
    except NpyError as err:
        raise RemoteError(f"{host}: the embeddings file the board wrote is not a float32 [{rows}, {dim}] .npy ({err}); "
                          f"nothing was written to {local}") from err
    write_atomic(Path(local), data)


def _fetch_index(conn: Connection, remote: str, inputs: Inputs, row: dict | None, local_of: dict, host: str) -> None:
    """The board's index, bounded by what N items of the texts sent can take, checked, and with
    the copies' image paths put back as the caller's before it is written here."""
    rows, local = inputs.rows, inputs.out
    dim = _announced(row, rows, host, "index")
    sent = sum(os.path.getsize(path) for path, _ in inputs.files) + rows * 4096  # item text: lines or paths
    limit = index_format.Layout.of(index_format.ENCODINGS["binary"], rows, dim, index_format.MAX_HEADER_BYTES,
                                   sent).total
    data = _fetch_bounded(conn, remote, limit, "index", f"{rows} items of {dim} dimensions with their texts take",
                          local, host)
    try:
        info = index_format.parse(data, "the index the board wrote")
        if info.count != rows or info.dim != dim:
            raise index_format.IndexFormatError(f"it holds {info.count} x {info.dim}, not {rows} x {dim}")
        if info.kind == "image":
            data = index_format.with_items(data, [local_of.get(item, item) for item in info.items])
    except index_format.IndexFormatError as err:
        raise RemoteError(f"{host}: {err}; nothing was written to {local}") from err
    write_atomic(Path(local), data)


def write_atomic(path: Path, data: bytes) -> None:
    """Beside `path`, flushed to disk, then renamed over it: a crash leaves the old file or the new."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write_synced(partial, data)
        os.replace(partial, path)
        fsync_dir(path.parent)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise RemoteError(f"cannot write {path} ({err.strerror or err}); check that folder") from err


def _remove(conn: Connection, run_dir: str) -> None:
    """Best effort: a folder that cannot be removed now (the link died) goes in a later run."""
    try:
        conn.run_script('rm -rf -- "$1"', (run_dir,), timeout=60)
    except RemoteError:
        pass


def _sendable_name(path: str) -> str:
    """The file's own name, which its copy keeps; SFTP names are UTF-8, so others are refused."""
    name = os.path.basename(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RemoteError(f"{path!r}: the file name is not UTF-8, which SFTP cannot send; rename the file") from err
    if not os.path.exists(path):
        raise RemoteError(f"cannot read {path} (no such file); check the path")
    return name


def _text_lines(path: str) -> int:
    """How many texts the runner reads from the file (its ReadLines: '\\n' ends a line, the last needs none)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise RemoteError(f"cannot read {path} ({err.strerror}); check the path") from err
    return data.count(b"\n") + (not data.endswith(b"\n")) if data else 0
