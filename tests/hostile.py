"""Hostile inputs for tests/test_fault_matrix.py and tests/test_formats_fuzz.py: real bundles and
checkpoints taken apart and put back together wrongly, as an attacker would, without going
through the writers (which refuse to write them)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from testbed.bundles import make_bundle

from edgeclip.formats.bundle import MANIFEST

EDGECLIP = str(Path(sys.executable).with_name("edgeclip"))
# Measures its one child: a small parent, so the child's peak RSS is its own (ru_maxrss is
# inherited through fork and exec, so a child of pytest would report pytest's peak).
_MEASURE = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
            "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(done.returncode)")


def older_schema(manifest: dict, number: int) -> dict:
    """A copy of a schema 5 manifest as schema `number` (1-4) had it: a `modules` table of the
    variants named by precision instead of the variants table, no CPU features before 4, no batch
    sizes besides 1 before 3."""
    older = json.loads(json.dumps(manifest))
    older["schema_version"] = number
    older["modules"] = {row["name"]: row["towers"] for row in older.pop("variants")}
    if number < 4:
        older["target"].pop("cpu_features", None)
    for towers in older["modules"].values():
        for entry in towers.values():
            if number < 3:
                entry.pop("batch_modules", None)
    return older


def edit_field(path: str | tuple, value):
    """An edit that sets (or, with KeyError, deletes) one field of a JSON tree: a str path is dotted,
    a tuple is for keys holding dots (member names); a number indexes a list."""
    def edit(tree: dict) -> None:
        *parents, last = path.split(".") if isinstance(path, str) else path
        for key in parents:
            tree = tree[int(key)] if isinstance(tree, list) else tree[key]
        if value is KeyError:
            del tree[last]
        else:
            tree[last] = value
    return edit


def small_bundle(path: Path) -> Path:
    """A real bundle (test stand-in runner, two tiny modules): what the mutations start from."""
    return make_bundle(path, ternary_bytes=4096, fp32_bytes=4096)


def members(bundle: Path) -> dict[str, bytes]:
    """Every member of a small bundle, manifest first."""
    with tarfile.open(bundle) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def manifest_of(bundle: Path) -> dict:
    return json.loads(members(bundle)[MANIFEST])


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    """A plain ustar tar of `files` in the given order, whatever they hold."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def with_manifest(bundle: Path, out: Path, manifest: bytes | dict) -> Path:
    """`bundle` with its manifest replaced (a dict is dumped as JSON), every other member kept."""
    files = members(bundle)
    files[MANIFEST] = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return write_tar(out, files)


def sparse_header(name: str, stored: int, real_size: int) -> bytes:
    """A GNU sparse member's header: `stored` bytes follow it in the tar, `real_size` once
    expanded (one data region, at the end; the rest a hole of zeros)."""
    info = tarfile.TarInfo(name)
    info.size, info.type = stored, tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[386:398] = tarfile.itn(real_size - stored, 12, tarfile.GNU_FORMAT)
    header[398:410] = tarfile.itn(stored, 12, tarfile.GNU_FORMAT)
    header[482] = 0  # no extension headers
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % tarfile.calc_chksums(bytes(header))[0]
    return bytes(header)


def sparse_manifest_bundle(path: Path, real_size: int, stored: int = 9 << 20) -> Path:
    """A 9 MB tar whose first member, manifest.json, expands to `real_size` bytes: a reader that
    calls `.read()` on it allocates all of them."""
    with open(path, "wb") as out:
        out.write(sparse_header(MANIFEST, stored, real_size))
        out.write(b"{" + b" " * (stored - 2) + b"}")
        out.write(b"\0" * (-stored % 512 + 1024))
    return path


def with_sparse_member(path: Path, files: dict[str, bytes], sparse: str) -> Path:
    """A tar of `files` where member `sparse` is stored as a GNU sparse file of its real size, so
    only its type says it is not a regular file."""
    with open(path, "wb") as out:
        for name, data in files.items():
            if name == sparse:
                out.write(sparse_header(name, len(data), len(data)))
            else:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.write(info.tobuf(format=tarfile.USTAR_FORMAT))
            out.write(data + b"\0" * (-len(data) % 512))
        out.write(b"\0" * 1024)
    return path


def extension_header(kind: bytes, declared: int, stored: bytes = b"") -> bytes:
    """A PAX (`x`, `g`) or GNU long-name (`L`, `K`) header block declaring `declared` bytes of
    extension data, followed by `stored` bytes of it (padded to a block): a reader that trusts the
    declaration reads that many bytes whole."""
    info = tarfile.TarInfo("././@LongLink" if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) else "PaxHeader")
    info.type, info.size = kind, declared
    return info.tobuf(format=tarfile.GNU_FORMAT) + stored + b"\0" * (-len(stored) % 512)


def pax_record(key: str, value: str) -> bytes:
    """One `LEN key=value\n` PAX record (LEN counts the whole record, itself included)."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def with_extensions(path: Path, files: dict[str, bytes], before: str, headers: bytes) -> Path:
    """A ustar tar of `files` with raw extension `headers` written just before member `before`."""
    with open(path, "wb") as out:
        for name, data in files.items():
            if name == before:
                out.write(headers)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.write(info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512))
        out.write(b"\0" * 1024)
    return path


def run_measured(args: list[str], env: dict | None = None, cwd: Path | None = None):
    """(exit status, stdout, stderr, peak RSS of the edgeclip process in MB) of `edgeclip ARGS`."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, EDGECLIP, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)
    *rest, rss_kb = done.stderr.rstrip("\n").split("\n")
    return done.returncode, done.stdout, "\n".join(rest), int(rss_kb) / 1024


def tree_state(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under `root` with its mode and content hash: what a refused input must not change."""
    return {str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
            for p in sorted(root.rglob("*"))}
