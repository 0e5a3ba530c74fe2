"""The schema of a bundle's manifest.json: every field a reader uses (verify, deploy, flash, run,
profile), checked for type, range and size before a member is extracted, a byte allocated for
it, or anything run. A failure is one BundleError naming the field. Fields no reader uses
(`runtime`, `edgeclip_version`, a board's `cores`, ...) are only required to be what JSON makes of
them. The format is documented in docs/bundle-format.md. Standard library only.
"""

from __future__ import annotations

import math
import posixpath
import re

from edgeclip.errors import BundleError
from edgeclip.formats.cpu_features import ALLOWED as CPU_FEATURES
from edgeclip.formats.jsonbound import load_bounded

# What this edgeclip writes: 2 added baked `labels`, 3 `batch_modules`, 4 `target.cpu_features`,
# 5 the `variants` table (replacing `modules`; cpu_features required), 6 a packed weight's
# `stored_shape` (a narrower kernel tiling read from a wider one's member).
SCHEMA_VERSION = 6
READ_VERSIONS = (1, 2, 3, 4, 5, 6)  # older bundles: no labels / batch 1 only / no CPU check / a `modules` table
MANIFEST = "manifest.json"
# The module precisions (before schema 5 also the only variant names), in the order reports list them.
VARIANTS = ("ternary", "fp32")
DEVICES = ("cpu",)  # where a variant's modules run
MAX_VARIANTS = 16
MAX_MANIFEST_BYTES = 8 << 20
MAX_MEMBERS = 4096
MAX_MEMBER_BYTES = 1 << 40  # a field bound only; verify_bundle's limits bound what is read
MAX_DIMS, MAX_DIM = 8, 1 << 31
MAX_LABELS = 10_000  # baked labels a bundle may carry
MAX_PROMPT_CHARS = 1024
MAX_BATCH = 64  # a compiled batch size; past it a tower's activations outgrow an edge board's memory
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # target name and arch, tower, function names
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OPTIONAL_TABLES = ("tokenizer", "preprocessing", "model", "runtime")


def parse_manifest(data: bytes, where) -> dict:
    """The manifest `data` holds, parsed within bounds and checked against the schema."""
    try:
        manifest = load_bounded(data, MAX_MANIFEST_BYTES)
    except ValueError as err:
        raise BundleError(f"{where}: {MANIFEST} {err}; rebuild the bundle") from err
    check_manifest(manifest, where)
    return manifest


def check_manifest(manifest, where) -> None:
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if type(version) is not int or version not in READ_VERSIONS:
        raise BundleError(
            f"{where}: bundle schema version {version!r} is not supported (this edgeclip reads "
            f"{', '.join(map(str, READ_VERSIONS))}); "
            "rebuild it with this edgeclip or upgrade edgeclip"
        )
    members = manifest.get("members")
    if not isinstance(members, dict):
        raise BundleError(f"{where}: {MANIFEST} has no member list; rebuild the bundle")
    check = _Checker(where, members)
    check.members()
    check.text(manifest, "name", 255)
    target = check.table(manifest, "target")
    check.word(target, "name", "target.")
    check.word(target, "arch", "target.")
    if "cpu_features" in target or version >= 5:
        if version < 4:
            raise check.fail("target.cpu_features", "needs bundle schema version 4")
        check.cpu_features(target, "target.")
    check.member(manifest, "runner", executable=True)
    if "runner_plan" in manifest:
        check.member(manifest, "runner_plan")
    if version >= 5:
        if "modules" in manifest:
            raise check.fail("modules", "is replaced by `variants` in bundle schema version 5")
        check.variants(manifest, version)
    else:
        check.modules(check.table(manifest, "modules"), version)
    check.references(check.table(manifest, "reference", required=False))
    check.floors(check.table(manifest, "min_cosine", required=False), list(variant_towers(manifest)))
    for key in _OPTIONAL_TABLES:
        check.table(manifest, key, required=False)
    tokenizer = manifest.get("tokenizer", {})
    if "vocab" in tokenizer:
        check.member(tokenizer, "vocab", "tokenizer.")
    model = manifest.get("model", {})
    if "family" in model:
        check.text(model, "family", 64, "model.")
    if "labels" in manifest:
        if version < 2:
            raise check.fail("labels", "needs bundle schema version 2")
        check.labels(check.table(manifest, "labels"))


def variant_towers(manifest: dict) -> dict[str, dict]:
    """{variant name: {tower: module entry}}, best variant first, for every schema version (before
    5 the `modules` table, ternary before fp32). Call it on a checked manifest."""
    if manifest.get("schema_version", SCHEMA_VERSION) >= 5:
        return {row["name"]: row["towers"] for row in manifest["variants"]}
    modules = manifest.get("modules", {})
    return {name: modules[name] for name in VARIANTS if name in modules}


def variant_rows(manifest: dict) -> list[dict]:
    """The variants table (schema 5), or what an older manifest's `modules` table means as one:
    each variant named by its precision, of the target's kernel family and CPU features."""
    if manifest.get("schema_version", SCHEMA_VERSION) >= 5:
        return manifest["variants"]
    target = manifest.get("target", {})
    return [{"name": name, "precision": name, "kernel_family": target.get("kernel_family"), "device": "cpu",
             "cpu_features": target.get("cpu_features", []), "towers": towers}
            for name, towers in variant_towers(manifest).items()]


def check_member_name(name: str, bundle) -> None:
    """Refuse a member path that could land outside the bundle folder (or is not one canonical path)."""
    normalized = posixpath.normpath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or normalized != name
        or normalized == ".."
        or normalized.startswith("../")
        or any(ord(c) < 32 for c in name)
    ):
        raise BundleError(f"{bundle}: member {name!r} escapes the bundle folder; refusing the bundle")


class _Checker:
    """One manifest's checks; every failure names the dotted field path."""

    def __init__(self, where, members: dict):
        self.where, self.all_members = where, members

    def fail(self, field: str, problem: str) -> BundleError:
        field = field if len(field) <= 80 else field[:77] + "..."
        return BundleError(f"{self.where}: {MANIFEST} field `{field}` {problem}; rebuild the bundle")

    def members(self) -> None:
        if len(self.all_members) > MAX_MEMBERS:
            raise self.fail("members", f"lists {len(self.all_members)} members, over the limit of {MAX_MEMBERS}")
        for name, entry in self.all_members.items():
            check_member_name(name, self.where)
            field = f"members.{name}"
            folders = [name[:i] for i, c in enumerate(name) if c == "/"]
            if any(folder in self.all_members for folder in folders):
                raise self.fail(field, "lies inside another member, which would have to be a file and a folder")
            if not isinstance(entry, dict):
                raise self.fail(field, f"is {_short(entry)}, not an object")
            if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
                raise self.fail(field + ".sha256", "is not 64 lowercase hex digits")
            size = entry.get("bytes")
            if type(size) is not int or not 0 <= size <= MAX_MEMBER_BYTES:
                raise self.fail(field + ".bytes", f"is {size!r}, not a byte count from 0 to {MAX_MEMBER_BYTES}")
            if type(entry.get("executable")) is not bool:
                raise self.fail(field + ".executable", f"is {entry.get('executable')!r}, not true or false")

    def table(self, parent: dict, key: str, prefix: str = "", required: bool = True) -> dict:
        if key not in parent and not required:
            return {}
        value = parent.get(key)
        if not isinstance(value, dict):
            raise self.fail(prefix + key, "is missing" if key not in parent else f"is {_short(value)}, not an object")
        return value

    def text(self, parent: dict, key: str, limit: int, prefix: str = "") -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= limit:
            raise self.fail(prefix + key, f"is {_short(value)}, not a text of 1 to {limit} characters")
        return value

    def word(self, parent: dict, key: str, prefix: str = "") -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not _WORD.fullmatch(value):
            raise self.fail(prefix + key, f"is {_short(value)}, not a name of letters, digits and _.+-")
        return value

    def member(self, parent: dict, key, prefix: str = "", executable: bool = False) -> str:
        path = parent[key] if isinstance(parent, list) else parent.get(key)
        if not isinstance(path, str) or path not in self.all_members:
            raise self.fail(f"{prefix}{key}", f"is {_short(path)}, not a member the bundle lists")
        if executable and not self.all_members[path]["executable"]:
            raise self.fail(f"{prefix}{key}", f"names {path!r}, which is not marked executable")
        return path

    def items(self, parent: dict, key: str, prefix: str) -> list:
        value = parent.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_MEMBERS:
            raise self.fail(prefix + key, f"is not a list of at most {MAX_MEMBERS} entries")
        return value

    def shape(self, parent: dict, prefix: str) -> None:
        shape = parent.get("shape")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or any(type(d) is not int or not 0 <= d <= MAX_DIM for d in shape)):
            raise self.fail(prefix + "shape", f"is {_short(shape)}, not a list of at most {MAX_DIMS} sizes")

    def files(self, parent: dict, key: str, prefix: str, dtype: bool) -> None:
        """A list of {path, shape[, dtype]} entries (references, packed weights)."""
        for i, item in enumerate(self.items(parent, key, prefix)):
            field = f"{prefix}{key}.{i}."
            if not isinstance(item, dict):
                raise self.fail(field[:-1], "is not an object")
            self.member(item, "path", field)
            self.shape(item, field)
            if dtype:
                self.word(item, "dtype", field)

    def modules(self, modules: dict, version: int) -> None:
        """Schema 1-4: {variant: {tower: module}}, the variant named by its precision."""
        for variant in modules:
            if variant not in VARIANTS:
                raise self.fail(f"modules.{variant}", f"is not a module variant (known: {', '.join(VARIANTS)})")
            self.towers(self.table(modules, variant, "modules."), f"modules.{variant}.", version)

    def variants(self, manifest: dict, version: int) -> None:
        """Schema 5: a list of {name, precision, kernel_family, device, cpu_features, towers}, best first."""
        rows = manifest.get("variants")
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_VARIANTS:
            raise self.fail("variants", f"is {_short(rows)}, not a list of 1 to {MAX_VARIANTS} variants")
        seen = set()
        for i, row in enumerate(rows):
            prefix = f"variants.{i}."
            if not isinstance(row, dict):
                raise self.fail(prefix[:-1], "is not an object")
            name = self.word(row, "name", prefix)
            if name in seen:
                raise self.fail(prefix + "name", f"repeats the variant name {name!r}")
            seen.add(name)
            for key, allowed in (("precision", VARIANTS), ("device", DEVICES)):
                if row.get(key) not in allowed:
                    raise self.fail(prefix + key, f"is {_short(row.get(key))}, not one of {', '.join(allowed)}")
            self.word(row, "kernel_family", prefix)
            self.cpu_features(row, prefix)
            self.towers(self.table(row, "towers", prefix), prefix + "towers.", version)

    def towers(self, towers: dict, where: str, version: int) -> None:
        for tower in towers:
            prefix = f"{where}{tower}."
            if not _WORD.fullmatch(tower):
                raise self.fail(prefix[:-1], "is not a tower name of letters, digits and _.+-")
            entry = self.table(towers, tower, where)
            self.member(entry, "path", prefix)
            if "function" in entry:
                self.word(entry, "function", prefix)
            params = self.items(entry, "params", prefix)
            for i in range(len(params)):
                self.member(params, i, prefix + "params.")
            self.files(entry, "packed_weights", prefix, dtype=False)
            self.stored_shapes(entry.get("packed_weights", []), prefix, version)
            if "batch_modules" in entry:
                if version < 3:
                    raise self.fail(prefix + "batch_modules", "needs bundle schema version 3")
                self.batch_modules(entry, prefix)

    def stored_shapes(self, weights: list, prefix: str, version: int) -> None:
        """A packed weight stored as another kernel family's tiling: a 3-D shape the runner re-tiles from."""
        for i, item in enumerate(weights):
            if "stored_shape" not in item:
                continue
            field = f"{prefix}packed_weights.{i}."
            if version < 6:
                raise self.fail(field + "stored_shape", "needs bundle schema version 6")
            shape = item["stored_shape"]
            if not isinstance(shape, list) or len(shape) != 3 or any(type(d) is not int or not 0 < d <= MAX_DIM
                                                                      for d in shape):
                raise self.fail(field + "stored_shape", f"is {_short(shape)}, not a list of 3 positive sizes")

    def batch_modules(self, entry: dict, prefix: str) -> None:
        """The tower compiled for more batch sizes than 1: each {batch, path, function}, ascending."""
        last = 1
        for i, item in enumerate(self.items(entry, "batch_modules", prefix)):
            field = f"{prefix}batch_modules.{i}."
            if not isinstance(item, dict):
                raise self.fail(field[:-1], "is not an object")
            batch = item.get("batch")
            if type(batch) is not int or not last < batch <= MAX_BATCH:
                raise self.fail(field + "batch", f"is {_short(batch)}, not a batch size from {last + 1} to {MAX_BATCH} "
                                "(sizes ascend, batch 1 is the tower's own module)")
            last = batch
            self.member(item, "path", field)
            self.word(item, "function", field)

    def cpu_features(self, parent: dict, prefix: str) -> None:
        """The CPU features the code needs: distinct names of formats.cpu_features' table."""
        names = parent.get("cpu_features")
        if (not isinstance(names, list) or len(names) > len(CPU_FEATURES) or len(set(map(str, names))) != len(names)
                or not all(isinstance(n, str) and n in CPU_FEATURES for n in names)):
            raise self.fail(prefix + "cpu_features", f"is {_short(names)}, not a list of distinct CPU feature names "
                            "(such as asimd, asimddp, avx2)")

    def references(self, reference: dict) -> None:
        for tower in reference:
            if not _WORD.fullmatch(tower):
                raise self.fail(f"reference.{tower}", "is not a tower name of letters, digits and _.+-")
            entry = self.table(reference, tower, "reference.")
            for key in ("inputs", "outputs"):
                self.files(entry, key, f"reference.{tower}.", dtype=True)

    def labels(self, labels: dict) -> None:
        """Baked labels: the names and embeddings members, how many, the prompt they were embedded with."""
        self.member(labels, "names", "labels.")
        self.member(labels, "embeddings", "labels.")
        count = labels.get("count")
        if type(count) is not int or not 1 <= count <= MAX_LABELS:
            raise self.fail("labels.count", f"is {_short(count)}, not a label count from 1 to {MAX_LABELS}")
        self.text(labels, "prompt", MAX_PROMPT_CHARS, "labels.")

    def floors(self, floors: dict, variants: list[str]) -> None:
        for variant, value in floors.items():
            if variant not in variants:
                raise self.fail(f"min_cosine.{variant}", f"is not a variant of the bundle (it has {', '.join(variants)})")
            if type(value) not in (int, float) or not math.isfinite(value) or not 0 < value <= 1:
                raise self.fail(f"min_cosine.{variant}", f"is {_short(value)}, not a cosine in (0, 1]")


def _short(value) -> str:
    """A value for a one-line message: hostile manifests hold long strings."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
