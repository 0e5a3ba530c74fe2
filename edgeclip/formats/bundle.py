"""The `.edgeclip` bundle: a deterministic tar whose first member, `manifest.json`, lists every
other member with its sha256. Reading it never trusts the tar: members that are not regular files,
that escape the bundle folder, or that the manifest does not list are refused before anything is
written. Standard library only, so `remote`, `flash` and the device agent read bundles without
torch or tvm.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path

from edgeclip.errors import BundleError
from edgeclip.fsutil import write_synced

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".edgeclip"
# The module variants a bundle may carry, in the order runners and reports list them, and the
# agreement each must reach with the PyTorch reference on the bundled input: the ternary modules
# quantize activations to int8, the fp32 baseline only reorders float sums.
VARIANTS = ("ternary", "fp32")
MIN_COSINE = {"ternary": 0.995, "fp32": 0.999}


def output_floor(manifest: dict, variant: str) -> float:
    """The cosine `variant` must reach: the floor the bundle was built with, else this schema's."""
    return manifest.get("min_cosine", {}).get(variant, MIN_COSINE.get(variant, MIN_COSINE["ternary"]))


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
        _check_member_name(name, path)
    members = {
        name: {"sha256": sha256_bytes(data), "bytes": len(data), "executable": name in executables}
        for name, data in sorted(files.items())
    }
    full_manifest = {**manifest, "schema_version": SCHEMA_VERSION, "members": members}
    manifest_bytes = json.dumps(full_manifest, indent=2, sort_keys=True).encode() + b"\n"
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
    """What the model itself weighs in a bundle: one variant's modules, fixed parameters and stored
    weights (not the runner, runtime libraries, tokenizer or reference data)."""
    members = manifest["members"]
    total = 0
    for entry in manifest["modules"].get(variant, {}).values():
        paths = [entry["path"], *entry["params"], *(w["path"] for w in entry.get("packed_weights", ()))]
        total += sum(members[p]["bytes"] for p in paths)
    return total


def _add(tar: tarfile.TarFile, name: str, data: bytes, executable: bool) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def _check_member_name(name: str, bundle) -> None:
    normalized = posixpath.normpath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or normalized != name
        or normalized == ".."
        or normalized.startswith("../")
    ):
        raise BundleError(f"{bundle}: member {name!r} escapes the bundle folder; refusing the bundle")


def read_manifest(path) -> dict:
    """The manifest alone (first member), with its schema checked; members are not hashed."""
    with _open_tar(path) as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise BundleError(f"{path}: first member is not {MANIFEST}; not an edgeclip bundle")
        return _parse_manifest(tar.extractfile(first).read(), path)


def _parse_manifest(data: bytes, path) -> dict:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: {MANIFEST} is not valid JSON ({err}); rebuild the bundle") from err
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{path}: bundle schema version {version!r} is not supported (this edgeclip reads {SCHEMA_VERSION}); "
            "rebuild it with this edgeclip or upgrade edgeclip"
        )
    if not isinstance(manifest.get("members"), dict):
        raise BundleError(f"{path}: {MANIFEST} has no member list; rebuild the bundle")
    return manifest


def verify_bundle(path, arch: str | None = None, extract_to=None) -> dict:
    """Check schema, member names, types and hashes (and `arch`, when given); return the manifest.

    With `extract_to`, members are written there as they are checked, into a temporary folder
    that is renamed into place only once everything matched.
    """
    staging = None
    if extract_to is not None:
        extract_to = Path(extract_to)
        extract_to.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=extract_to.parent, prefix=f".{extract_to.name}."))
    try:
        manifest = _verify(path, arch, staging)
        if staging is not None:
            if extract_to.exists():
                raise BundleError(f"{extract_to} already exists; remove it or extract elsewhere")
            os.replace(staging, extract_to)
            staging = None
        return manifest
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _verify(path, arch: str | None, staging: Path | None) -> dict:
    with _open_tar(path) as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile():
            raise BundleError(f"{path}: first member is not {MANIFEST}; not an edgeclip bundle")
        manifest = _parse_manifest(tar.extractfile(first).read(), path)
        bundle_arch = manifest.get("target", {}).get("arch")
        if arch is not None and bundle_arch != arch:
            raise BundleError(
                f"{path}: bundle is built for {bundle_arch!r} but this device is {arch!r}; "
                f"build it with a target of that architecture"
            )
        expected = manifest["members"]
        seen = set()
        try:
            for member in tar:
                if member is first:
                    continue
                _check_member_name(member.name, path)
                if not member.isfile():
                    kind = "symlink" if member.issym() else "link" if member.islnk() else "non-file"
                    raise BundleError(f"{path}: member {member.name!r} is a {kind}; refusing the bundle")
                if member.name not in expected or member.name in seen:
                    raise BundleError(f"{path}: member {member.name!r} is not listed once in the manifest; refusing")
                data = tar.extractfile(member).read()
                if sha256_bytes(data) != expected[member.name]["sha256"]:
                    raise BundleError(
                        f"{path}: member {member.name!r} does not match its sha256 (tampered or corrupted); "
                        "copy the bundle again"
                    )
                member_arch = elf_arch(data)
                if member_arch is not None and bundle_arch is not None and member_arch != bundle_arch:
                    raise BundleError(
                        f"{path}: member {member.name!r} is {member_arch} code but the bundle says {bundle_arch!r}; "
                        "the bundle was assembled wrongly, rebuild it"
                    )
                seen.add(member.name)
                if staging is not None:
                    _write_member(staging, member.name, data, expected[member.name].get("executable", False))
        except (tarfile.TarError, EOFError, OSError) as err:
            raise BundleError(f"{path}: the tar is damaged or truncated ({err}); copy the bundle again") from err
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleError(f"{path}: members {missing[:3]} are missing (truncated bundle?); copy it again")
        return manifest


def _write_member(root: Path, name: str, data: bytes, executable: bool) -> None:
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_synced(target, data)
    target.chmod(0o755 if executable else 0o644)


def _open_tar(path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")
    except FileNotFoundError as err:
        raise BundleError(f"bundle {path} does not exist; build one with `edgeclip build`") from err
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{path} is not a readable bundle tar ({err}); copy it again or rebuild it") from err


def runner_member(manifest: dict, where) -> str:
    """The runner a verified bundle names, if the bundle carries it as an executable member:
    nothing else is ever run, whatever path the manifest writes."""
    runner = manifest.get("runner")
    members = manifest.get("members")
    entry = members.get(runner) if isinstance(runner, str) and isinstance(members, dict) else None
    if not isinstance(entry, dict) or entry.get("executable") is not True:
        raise BundleError(f"{where}: the manifest names no runner that the bundle carries as an executable member "
                          f"(runner: {runner!r}); rebuild the bundle with `edgeclip build`")
    return runner
