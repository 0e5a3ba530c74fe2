"""The `.edgeclip` bundle: a deterministic tar whose first member, `manifest.json`, lists every
other member with its sha256 and size. Reading it never trusts the tar: the manifest is checked
against its schema (`edgeclip.formats.manifest`), every tar header against the manifest, the
limits and the file's real size before its data is read, and data is streamed in chunks. Members
that are not regular files (sparse ones included), escape the bundle folder, or that the manifest
does not list are refused before anything is written, and so are tar extension headers (PAX, GNU
long names) that are large or come in long runs, before tarfile reads them. Standard library only, so `remote`, `flash` and the device agent read bundles without
torch or tvm.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgeclip.errors import BundleError
from edgeclip.formats.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    SCHEMA_VERSION,
    check_manifest,
    check_member_name,
    parse_manifest,
    variant_rows,
    variant_towers,
)
from edgeclip.formats.manifest import VARIANTS as VARIANTS  # re-exported: bundle readers import it here

SUFFIX = ".edgeclip"
CHUNK = 1 << 20  # members are hashed and extracted this many bytes at a time
ELF_HEAD = 20  # bytes elf_arch needs
# The agreement each module variant must reach with the PyTorch reference on the bundled input:
# the ternary modules quantize activations to int8, the fp32 baseline only reorders float sums.
MIN_COSINE = {"ternary": 0.995, "fp32": 0.999}
# edgeclip writes plain ustar, but other tar tools may add PAX records (times, a long path) or GNU
# long names: a few hundred bytes each, and PATH_MAX is 4096. tarfile would read any size whole.
MAX_EXTENSION_BYTES = 16 << 10
MAX_EXTENSIONS_IN_A_ROW = 4  # tarfile follows a run of them by recursion
EXTENSIONS = {
    tarfile.XHDTYPE: "PAX extended header",
    tarfile.XGLTYPE: "PAX global header",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended header",
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link name",
}


@dataclass(frozen=True)
class Limits:
    """What verify_bundle accepts, checked against the manifest and each tar header before any
    member is read: the largest member and the sum of all members, in bytes."""

    member_bytes: int = 4 << 30
    bundle_bytes: int = 16 << 30


LIMITS = Limits()


def output_floor(manifest: dict, variant: str) -> float:
    """The cosine `variant` must reach: the floor the bundle was built with, else its precision's."""
    precision = next((row["precision"] for row in variant_rows(manifest) if row["name"] == variant), variant)
    return manifest.get("min_cosine", {}).get(variant, MIN_COSINE.get(precision, MIN_COSINE["ternary"]))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ELF e_machine values of the architectures bundles are built for (what `uname -m` prints).
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x28: "arm", 0xF3: "riscv64"}


def elf_arch(data: bytes) -> str | None:
    """The architecture of an ELF file's bytes (`uname -m` spelling), or None for non-ELF data."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    byteorder = "little" if data[5] == 1 else "big"
    machine = int.from_bytes(data[18:20], byteorder)
    return ELF_MACHINES.get(machine, f"elf-machine-{machine:#x}")


def write_bundle(path, manifest: dict, files: dict[str, bytes], executables: frozenset[str] = frozenset()) -> Path:
    """Write a bundle atomically. Same inputs give a byte-identical tar (fixed order, times, owners)."""
    for name in files:
        check_member_name(name, path)
    members = {
        name: {"sha256": sha256_bytes(data), "bytes": len(data), "executable": name in executables}
        for name, data in sorted(files.items())
    }
    full_manifest = {**manifest, "schema_version": SCHEMA_VERSION, "members": members}
    check_manifest(full_manifest, path)  # never write what a reader would refuse
    manifest_bytes = json.dumps(full_manifest, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                _add(tar, MANIFEST, manifest_bytes, executable=False)
                for name in members:
                    _add(tar, name, files[name], executable=name in executables)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def payload_bytes(manifest: dict, variant: str) -> int:
    """What the model itself weighs in a bundle: one variant's modules (every batch size's),
    fixed parameters and stored weights (not the runner, runtime libraries, tokenizer or reference data).
    Weights a fat bundle's variants share count for each of them."""
    members = manifest["members"]
    total = 0
    for entry in variant_towers(manifest).get(variant, {}).values():
        paths = [entry["path"], *(b["path"] for b in entry.get("batch_modules", ())), *entry.get("params", ()),
                 *(w["path"] for w in entry.get("packed_weights", ()))]
        total += sum(members[p]["bytes"] for p in paths)
    return total


def _add(tar: tarfile.TarFile, name: str, data: bytes, executable: bool) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def read_manifest(path) -> dict:
    """The manifest alone (first member), with its schema checked; members are not hashed."""
    return parse_manifest(read_manifest_bytes(path), path)


def read_manifest_bytes(path) -> bytes:
    """`manifest.json` exactly as the tar holds it, read only after its header proved it small."""
    with _open_tar(path) as tar, _damage_is_bundle_error(path):
        return tar.extractfile(_first_member(tar, path)).read()


MAX_PLAN_BYTES = 1 << 20


def read_plan(path, manifest: dict) -> str:
    """The bundle's runner.plan (its `runner_plan` member), checked against the manifest's size and
    sha256 before it is used: what the probes check a board's CPU against. "" when it has none."""
    name = manifest.get("runner_plan")
    entry = manifest.get("members", {}).get(name) if name else None
    if entry is None:
        return ""
    if entry["bytes"] > MAX_PLAN_BYTES:
        raise BundleError(f"{path}: {name} declares {entry['bytes']} bytes, over the limit of {MAX_PLAN_BYTES}; "
                          "rebuild the bundle")
    with _open_tar(path) as tar, _damage_is_bundle_error(path):
        member = tar.getmember(name) if name in tar.getnames() else None
        if member is None or not member.isfile() or member.size != entry["bytes"]:
            raise BundleError(f"{path}: {name} is missing or not the size the manifest says; copy the bundle again")
        _check_in_file(member, path)
        data = tar.extractfile(member).read()
    if sha256_bytes(data) != entry["sha256"]:
        raise BundleError(f"{path}: {name} does not match its sha256; copy the bundle again")
    return data.decode("utf-8", errors="replace")


def _first_member(tar: tarfile.TarFile, path) -> tarfile.TarInfo:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BundleError(f"{path}: first member is not {MANIFEST}; not an edgeclip bundle")
    if first.issparse():
        raise BundleError(f"{path}: {MANIFEST} is a sparse tar member; edgeclip never writes one, refusing the bundle")
    if first.size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {MANIFEST} declares {first.size} bytes, over the limit of "
                          f"{MAX_MANIFEST_BYTES}; refusing the bundle")
    _check_in_file(first, path)
    return first


def _check_in_file(member: tarfile.TarInfo, path) -> None:
    """A member's declared size must fit in what the file holds, checked before a byte is read."""
    if member.offset_data + member.size > Path(path).stat().st_size:
        raise BundleError(f"{path}: member {member.name!r} declares {member.size} bytes, more than the file "
                          "holds; the tar is damaged or truncated, copy the bundle again")


@contextmanager
def _damage_is_bundle_error(path):
    try:
        with _extensions_are_bundle_errors(path):
            yield
    except (tarfile.TarError, EOFError, OSError) as err:
        raise BundleError(f"{path}: the tar is damaged or truncated ({err}); copy the bundle again") from err


def verify_bundle(path, arch: str | None = None, extract_to=None, limits: Limits = LIMITS) -> dict:
    """Check schema, member names, types, sizes and hashes (and `arch`, when given); return the manifest.

    Members are streamed in chunks, never held whole. With `extract_to`, members are written there
    as they are checked, into a temporary folder that is renamed into place only once everything
    matched.
    """
    staging = None
    if extract_to is not None:
        extract_to = Path(extract_to)
        extract_to.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=extract_to.parent, prefix=f".{extract_to.name}."))
    try:
        manifest = _verify(path, arch, staging, limits)
        if staging is not None:
            if extract_to.exists():
                raise BundleError(f"{extract_to} already exists; remove it or extract elsewhere")
            os.replace(staging, extract_to)
            staging = None
        return manifest
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _verify(path, arch: str | None, staging: Path | None, limits: Limits) -> dict:
    with _open_tar(path) as tar:
        with _damage_is_bundle_error(path):
            first = _first_member(tar, path)
            manifest = parse_manifest(tar.extractfile(first).read(), path)
        bundle_arch = manifest["target"]["arch"]
        if arch is not None and bundle_arch != arch:
            raise BundleError(
                f"{path}: bundle is built for {bundle_arch!r} but this device is {arch!r}; "
                f"build it with a target of that architecture"
            )
        expected = manifest["members"]
        _check_sizes(expected, path, limits)
        seen = set()
        with _damage_is_bundle_error(path):
            for member in tar:
                if member is first:
                    continue
                _check_header(member, expected, seen, path)
                digest, head = _read_member(tar, member, expected[member.name]["executable"], staging)
                if digest != expected[member.name]["sha256"]:
                    raise BundleError(
                        f"{path}: member {member.name!r} does not match its sha256 (tampered or corrupted); "
                        "copy the bundle again"
                    )
                member_arch = elf_arch(head)
                if member_arch is not None and member_arch != bundle_arch:
                    raise BundleError(
                        f"{path}: member {member.name!r} is {member_arch} code but the bundle says {bundle_arch!r}; "
                        "the bundle was assembled wrongly, rebuild it"
                    )
                seen.add(member.name)
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleError(f"{path}: members {missing[:3]} are missing (truncated bundle?); copy it again")
        return manifest


def _check_sizes(expected: dict, path, limits: Limits) -> None:
    """The manifest's byte counts against the limits and the file, before any member is read."""
    for name, entry in expected.items():
        if entry["bytes"] > limits.member_bytes:
            raise BundleError(f"{path}: member {name!r} is listed as {entry['bytes']} bytes, over the limit of "
                              f"{limits.member_bytes}; refusing the bundle")
    total = sum(entry["bytes"] for entry in expected.values())
    if total > limits.bundle_bytes:
        raise BundleError(f"{path}: members add up to {total} bytes, over the limit of {limits.bundle_bytes}; "
                          "refusing the bundle")
    if total > Path(path).stat().st_size:
        raise BundleError(f"{path}: the manifest lists {total} bytes of members but the file is smaller; "
                          "the tar is damaged or truncated, copy the bundle again")


def _check_header(member: tarfile.TarInfo, expected: dict, seen: set, path) -> None:
    """Everything a member's tar header must satisfy before its data is read."""
    check_member_name(member.name, path)
    if not member.isfile() or member.issparse():
        kind = ("symlink" if member.issym() else "link" if member.islnk()
                else "sparse file" if member.isfile() else "non-file")
        raise BundleError(f"{path}: member {member.name!r} is a {kind}; refusing the bundle")
    if member.name not in expected or member.name in seen:
        raise BundleError(f"{path}: member {member.name!r} is not listed once in the manifest; refusing")
    if member.size != expected[member.name]["bytes"]:
        raise BundleError(f"{path}: member {member.name!r} holds {member.size} bytes but the manifest lists "
                          f"{expected[member.name]['bytes']} (tampered or corrupted); copy the bundle again")
    _check_in_file(member, path)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, executable: bool, staging: Path | None):
    reader = tar.extractfile(member)
    if staging is None:
        return _stream(reader, None, None)
    with _open_member(staging, member.name) as sink:
        result = _stream(reader, sink, staging)
        _finish_member(sink, executable, staging)
    return result


def _stream(reader, sink, staging) -> tuple[str, bytes]:
    """(sha256, first bytes) of a member, read in chunks and copied into `sink` when given."""
    digest, head = hashlib.sha256(), b""
    while block := reader.read(CHUNK):
        digest.update(block)
        head = head or block[:ELF_HEAD]
        if sink is not None:
            with _write_errors(staging):
                view = memoryview(block)
                while view:
                    view = view[sink.write(view) :]
    return digest.hexdigest(), head


def _open_member(root: Path, name: str):
    target = root / name
    with _write_errors(root):
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a full disk fails the write itself, not a later close that would hide why.
        return open(target, "wb", buffering=0)


def _finish_member(sink, executable: bool, root: Path) -> None:
    with _write_errors(root):
        os.fsync(sink.fileno())
        os.fchmod(sink.fileno(), 0o755 if executable else 0o644)


@contextmanager
def _write_errors(root: Path):
    try:
        yield
    except OSError as err:
        raise BundleError(f"cannot extract the bundle into {root.parent} ({err}); free space there or "
                          "extract elsewhere") from err


class _HeaderRefused(Exception):
    """An extension header out of bounds or unparsable, raised from inside tarfile."""


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a PAX header or GNU long name whole, and each one makes it read the next
    header recursively: both are checked here, from the header block alone. tarfile's parsing of
    PAX values (a GNU sparse map, say) raises plain ValueError; that becomes one message too."""

    def _proc_member(self, tar):
        kind = EXTENSIONS.get(self.type)
        run = tar.edgeclip_extension_run = getattr(tar, "edgeclip_extension_run", 0) + 1 if kind else 0
        if kind and self.size > MAX_EXTENSION_BYTES:
            raise _HeaderRefused(f"a {kind} in the tar declares {self.size} bytes, over the limit of "
                                 f"{MAX_EXTENSION_BYTES}; refusing the bundle")
        if run > MAX_EXTENSIONS_IN_A_ROW:
            raise _HeaderRefused(f"the tar has more than {MAX_EXTENSIONS_IN_A_ROW} extension headers (PAX, GNU long "
                                 "names) in a row; refusing the bundle")
        try:
            return super()._proc_member(tar)
        except (ValueError, OverflowError) as err:
            raise _HeaderRefused(f"the tar is damaged (a header does not parse: {err}); copy the bundle again") from None


@contextmanager
def _extensions_are_bundle_errors(path):
    try:
        yield
    except _HeaderRefused as err:
        raise BundleError(f"{path}: {err}") from None


def _open_tar(path) -> tarfile.TarFile:
    try:
        with _extensions_are_bundle_errors(path):
            return tarfile.open(path, mode="r:", tarinfo=_BoundedTarInfo)
    except FileNotFoundError as err:
        raise BundleError(f"bundle {path} does not exist; build one with `edgeclip build`") from err
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{path} is not a readable bundle tar ({err}); copy it again or rebuild it") from err

