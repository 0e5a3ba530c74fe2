"""`edgeclip build`: compiled towers + TVM runtime + libedgeclip + runner -> one `.edgeclip` tar.

Two steps, so each can be used (and tested) alone:
- `write_model_bundle` packs already compiled modules and their reference data for a target;
- `build_bundle` goes from a checkpoint: reference inputs/outputs from the PyTorch model, tower
  modules from the lowering (`edgeclip.lower`), then `write_model_bundle`.
Nothing time- or path-dependent enters the tar, so the same inputs give identical member hashes.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeclip import __version__
from edgeclip.bundle import agent_app
from edgeclip.bundle import labels as baked
from edgeclip.bundle.model_info import bundle_family, model_info, tokenizer_files
from edgeclip.bundle.weights import WeightStore
from edgeclip.errors import BundleError
from edgeclip.formats.bundle import MIN_COSINE, SUFFIX, write_bundle
from edgeclip.formats.manifest import MAX_BATCH
from edgeclip.lower.target import alternatives, cpu_features
from edgeclip.native import runtime_libs, toolchain
from edgeclip.targets import Target, load_target

if TYPE_CHECKING:
    from edgeclip.models.families.base import ModelFamily

RUNNER = "bin/edgeclip-runner"
LIBRARY = f"lib/{toolchain.LIBRARY_NAME}"
HEADER = "include/edgeclip.h"
PLAN = "runner.plan"
TOWERS = ("image", "text")
REFERENCE_TEXT = "a photo of a cat"
# The image tower's compiled batch sizes: 1 for one photo at a time, 8 for folders (embed --batch 8).
DEFAULT_BATCHES = (1, 8)


@dataclass(frozen=True)
class BundleModule:
    """One compiled tower: a Relax VM executable (`tvm.compile` result) and its entry function.
    `params` are fixed arguments passed after the tower's inputs (weights kept out of the code);
    `packed_weights` (2-bit kernel packings, uint8) follow them and ship 1.6-bit: the runner
    rebuilds the kernel bytes at load, which makes the payload 20 % smaller than 2-bit.
    `batch`: the rows its data inputs take; a tower's batch > 1 modules must take the same params
    and packed weights as its batch 1 module, which the bundle stores once for all of them."""

    tower: str
    variant: str
    executable: object
    function: str = "main"
    params: tuple[np.ndarray, ...] = ()
    packed_weights: tuple[np.ndarray, ...] = ()
    batch: int = 1


@dataclass(frozen=True)
class Variant:
    """A row of the bundle's variants table: modules of one precision compiled for one
    single-family target (a fat target's member, or the target itself)."""

    name: str
    precision: str  # "ternary" | "fp32"
    target: Target
    device: str = "cpu"


def bundle_variants(target: Target, baseline: bool) -> list[Variant]:
    """The variants a bundle for `target` carries, best first: one ternary variant per kernel
    family (named `ternary` when there is one, `ternary-FAMILY` in a fat bundle), then the fp32
    baseline compiled for the target's least demanding member."""
    members = target.variants
    rows = [Variant("ternary" if len(members) == 1 else f"ternary-{m.kernel_family}", "ternary", m) for m in members]
    return rows + ([Variant("fp32", "fp32", members[-1])] if baseline else [])


@dataclass(frozen=True)
class TowerReference:
    """A fixed input of a tower and the outputs the model must give for it."""

    tower: str
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]
    extra: dict = field(default_factory=dict)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_model_bundle(out_dir, name: str, target: Target, modules: list[BundleModule],
                       references: list[TowerReference], model_info: dict | None = None,
                       extra_files: dict[str, bytes] | None = None, variants: list[Variant] | None = None) -> Path:
    """Write `out_dir/<name>-<target>.edgeclip` with the modules, runtime, runner and references.
    `variants` (default: `bundle_variants` of the target) describe what the modules' variant names mean.
    A weight or parameter array two variants both take (the same bytes) is stored once, and a
    narrower kernel tiling of packed weights is read from the wider one's member (`WeightStore`)."""
    toolchain.require_compiler(*target.compiler)
    if variants is None:
        variants = bundle_variants(target, baseline=any(m.variant == "fp32" for m in modules))
    _check_modules(modules, references, variants)
    files = dict(extra_files or {})
    runtime = runtime_libs.runtime_dir(target.wheel_platform)
    for lib in runtime_libs.LIBRARIES.values():
        files[lib] = (runtime / lib).read_bytes()
    files[RUNNER] = toolchain.runner_binary(*target.compiler, target.wheel_platform).read_bytes()
    # The C API for applications on the board (docs/device-runtime.md); the runner is linked to it.
    files[LIBRARY] = toolchain.runtime_library(*target.compiler, target.wheel_platform).read_bytes()
    files[HEADER] = toolchain.PUBLIC_HEADER.read_bytes()
    files[agent_app.MEMBER] = agent_app.agent_zipapp()  # the serial agent: a board needs only python3

    reference_manifest = {}
    for ref in references:
        entry = {"inputs": [], "outputs": [], **ref.extra}
        for kind, arrays in (("input", ref.inputs), ("output", ref.outputs)):
            for i, array in enumerate(arrays):
                member = f"reference/{ref.tower}.{kind}{i}.npy"
                files[member] = npy_bytes(array)
                entry[kind + "s"].append({"path": member, "shape": list(array.shape), "dtype": str(array.dtype)})
        reference_manifest[ref.tower] = entry

    module_manifest: dict[str, dict] = {}
    weights = WeightStore(files, npy_bytes)
    with tempfile.TemporaryDirectory(prefix="edgeclip-build-") as tmp:
        for module in sorted(modules, key=lambda m: m.batch):  # batch 1 first: it holds the shared weights
            prefix = f"modules/{module.variant}/{module.tower}"
            stem = prefix if module.batch == 1 else f"{prefix}.b{module.batch}"
            so = toolchain.export_module(module.executable, Path(tmp) / f"{stem.replace('/', '-')}.so", *target.compiler)
            files[f"{stem}.so"] = so.read_bytes()
            if module.batch > 1:
                module_manifest[module.variant][module.tower].setdefault("batch_modules", []).append(
                    {"batch": module.batch, "path": f"{stem}.so", "function": module.function})
                continue
            params = [weights.param(f"{prefix}.param{i}.npy", param) for i, param in enumerate(module.params)]
            packed = [weights.packed(f"{prefix}.packed{i}.npy", weight) for i, weight in enumerate(module.packed_weights)]
            module_manifest.setdefault(module.variant, {})[module.tower] = {
                "path": f"{stem}.so", "function": module.function, "params": params, "packed_weights": packed,
            }
    rows = variant_table(variants, module_manifest, files)
    files[PLAN] = _plan(modules, rows, reference_manifest, model_info or {}, target).encode()

    manifest = {
        **(model_info or {}),
        "name": name,
        # What the least demanding variant needs: a CPU without it runs nothing of the bundle.
        "target": {**target.to_dict(), "cpu_features": cpu_features(target.variants[-1])},
        "runner": RUNNER,
        "runner_plan": PLAN,
        "variants": rows,
        "reference": reference_manifest,
        "min_cosine": {row["name"]: MIN_COSINE[row["precision"]] for row in rows},
        "runtime": {"apache-tvm": runtime_libs.TVM_WHEEL, "apache-tvm-ffi": runtime_libs.TVM_FFI_WHEEL},
        "edgeclip_version": __version__,
    }
    return write_bundle(Path(out_dir) / f"{name}-{target.name}{SUFFIX}", manifest, files, frozenset({RUNNER}))


def variant_table(variants: list[Variant], module_manifest: dict, files: dict[str, bytes]) -> list[dict]:
    """The manifest's variants rows, best first, of the variants that have modules. `added_bytes`:
    what the variant's modules and weights add to the bundle beyond the variants before it (the
    size cost of a fat bundle's second module; shared weights count for the first only)."""
    rows, seen = [], set()
    for variant in (v for v in variants if v.name in module_manifest):
        towers = module_manifest[variant.name]
        paths = {p for entry in towers.values() for p in (
            entry["path"], *(b["path"] for b in entry.get("batch_modules", ())), *entry["params"],
            *(w["path"] for w in entry["packed_weights"]))}
        rows.append({"name": variant.name, "precision": variant.precision, "kernel_family": variant.target.kernel_family,
                     "device": variant.device, "target": variant.target.name,
                     "cpu_features": cpu_features(variant.target), "towers": towers,
                     "added_bytes": sum(len(files[p]) for p in paths - seen)})
        seen |= paths
    return rows


def _check_modules(modules: list[BundleModule], references: list[TowerReference], variants: list[Variant]) -> None:
    names = {v.name: v for v in variants}
    if not any(names.get(m.variant) and names[m.variant].precision == "ternary" for m in modules):
        raise BundleError("a bundle needs at least one ternary module; compile the model first")
    refs = {r.tower for r in references}
    first = {(m.variant, m.tower): m for m in modules if m.batch == 1}
    for ref in references:
        if not all(np.isfinite(array).all() for array in (*ref.inputs, *ref.outputs) if array.dtype.kind == "f"):
            raise BundleError(f"the {ref.tower} tower's reference holds NaN or infinite values; the model cannot "
                              "give meaningful embeddings: check its weights (edgeclip inspect) and retrain")
    for module in modules:
        if module.variant not in names:
            raise BundleError(f"module variant {module.variant!r} unknown; this bundle's are {', '.join(names)}")
        if module.tower not in refs:
            raise BundleError(f"tower {module.tower!r} has no reference input/output; pass a TowerReference")
        if module.batch == 1:
            continue
        one = first.get((module.variant, module.tower))
        if one is None or not 1 < module.batch <= MAX_BATCH:
            raise BundleError(f"the {module.variant} {module.tower} module for batch {module.batch} needs a batch 1 "
                              f"module beside it and a batch size from 2 to {MAX_BATCH}")
        if sum(m.batch == module.batch and (m.variant, m.tower) == (module.variant, module.tower) for m in modules) > 1:
            raise BundleError(f"the {module.variant} {module.tower} tower has two modules for batch {module.batch}")
        # The bundle stores the weights once and hands the same tensors to every batch size's entry.
        same = [(a.shape == b.shape and np.array_equal(a, b)) for a, b in
                zip((*module.params, *module.packed_weights), (*one.params, *one.packed_weights), strict=False)]
        if len(module.params) != len(one.params) or len(module.packed_weights) != len(one.packed_weights) or not all(same):
            raise BundleError(f"the {module.variant} {module.tower} module for batch {module.batch} takes other "
                              "weights than its batch 1 module; compile both from the same checkpoint")


def tokenizer_plan_line(fields: dict) -> str:
    """The plan's `tokenizer` line, from the manifest's "tokenizer" fields (the runner reads no JSON)."""
    casing = " lowercase" if fields.get("lowercase") else ""
    return f"tokenizer {fields['kind']} {fields['vocab']} {fields['context_length']} {','.join(fields['inputs'])}{casing}"


def cpu_plan_lines(rows: list[dict], target: Target) -> list[str]:
    """The plan's `variant` lines (each variant of the variants table, best first, with the CPU
    features its code needs) and `alternative` lines (the other boards of the arch and theirs):
    the runner checks the CPU against them before loading a module, and a refusal names the
    boards that fit instead."""
    lines = [f"variant {row['name']} {','.join(row['cpu_features']) or '-'}" for row in rows]
    return lines + [f"alternative {name} {','.join(features) or '-'}" for name, features in alternatives(target)]


def packed_plan_line(item: dict) -> str:
    """`packed FILE SHAPE [from STORED]`: a stored weight, and the wider tiling it is re-tiled from."""
    line = f"packed {item['path']} {','.join(map(str, item['shape']))}"
    return line + (f" from {','.join(map(str, item['stored_shape']))}" if "stored_shape" in item else "")


def _plan(modules: list[BundleModule], rows: list[dict], references: dict, info: dict, target: Target) -> str:
    """The runner's plan (format in docs/bundle-format.md): the variants and alternative targets,
    the tokenizer, baked labels, then each variant's towers, best variant first."""
    lines = ["# edgeclip runner plan 4"]
    lines += cpu_plan_lines(rows, target)
    tokenizer = info.get("tokenizer")
    if tokenizer is not None and "vocab" in tokenizer:  # the runner tokenizes only with a bundled vocabulary
        lines.append(tokenizer_plan_line(tokenizer))
    if "labels" in info:
        lines.append(baked.labels_plan_line(info["labels"]))
    order = [row["name"] for row in rows]
    towers = {row["name"]: row["towers"] for row in rows}
    for module in sorted(modules, key=lambda m: (order.index(m.variant), m.tower)):
        if module.batch > 1:
            continue
        entry = towers[module.variant][module.tower]
        lines.append(f"module {module.variant} {module.tower} {entry['path']} {module.function}")
        lines += [f"batch {item['batch']} {item['path']} {item['function']}" for item in entry.get("batch_modules", [])]
        lines += [f"data {item['path']}" for item in references[module.tower]["inputs"]]
        lines += [f"param {path}" for path in entry["params"]]
        lines += [packed_plan_line(item) for item in entry["packed_weights"]]
        lines += [f"expected {item['path']}" for item in references[module.tower]["outputs"]]
    return "\n".join(lines) + "\n"


# ---- from a checkpoint -----------------------------------------------------------------------


def check_batches(batches) -> tuple[int, ...]:
    """Batch sizes as the bundle takes them: whole numbers from 1 to MAX_BATCH, 1 among them, ascending."""
    sizes = tuple(sorted(set(batches))) if all(type(b) is int for b in batches) else ()
    if not sizes or sizes[0] != 1 or sizes[-1] > MAX_BATCH:
        raise BundleError(f"--batch {','.join(map(str, batches))} is refused: give batch sizes from 1 to {MAX_BATCH}, "
                          "1 among them (the runner's single images and remainders), e.g. --batch 1,8")
    return sizes


def parse_batches(text: str) -> tuple[int, ...]:
    """`--batch 1,8` as sizes, or one BundleError line naming the problem."""
    try:
        return check_batches([int(part) for part in text.split(",")])
    except ValueError:
        raise BundleError(f"--batch {text!r} is not a list of whole numbers; give sizes like --batch 1,8") from None


def build_bundle(checkpoint, target_name: str, out_dir, towers=None, baseline: str | None = None,
                 labels: list[str] | None = None, prompt: str = baked.DEFAULT_PROMPT,
                 batches=DEFAULT_BATCHES, seq_len: int | None = None) -> Path:
    """`edgeclip build`: the checkpoint's towers compiled for the target, with references.

    Ternary modules come from the lowering (`edgeclip.lower.build.compile`, int8 activations);
    the fp32 baseline is the same tower with its weights folded to float32 constants, compiled
    by TVM's stock Relax pipeline, i.e. what the model costs without ternary kernels.
    `labels` are embedded here with the PyTorch text tower (`prompt` around each) and baked in,
    also into bundles without a text tower. `batches`: the compiled batch sizes of the image
    tower, or of a text-only bundle's text tower (a CLIP's text tower is compiled for batch 1). `towers`: default all the model
    has (a sentence encoder's one text tower); `seq_len`: the text context (default the family's).
    """
    from edgeclip.models.model_io import load_model

    target = load_target(target_name)
    toolchain.require_compiler(*target.compiler)  # fail before minutes of compiling
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise BundleError(f"{out_dir} exists and is not a directory; -o names the folder the bundle is written into")
    if baseline not in (None, "fp32"):
        raise BundleError(f"baseline {baseline!r} unknown; the only baseline is 'fp32'")
    if labels is not None:
        baked.check_labels(labels, "--labels")
        baked.check_prompt(prompt)
    batches = check_batches(batches)
    try:
        from edgeclip.lower import build as _lowering  # noqa: F401 - fail before loading the model
    except ImportError as err:
        raise BundleError("this edgeclip cannot compile whole models (edgeclip.lower is missing); "
                          "write bundles from compiled modules with write_model_bundle") from err
    model, config = load_model(checkpoint)
    family = bundle_family(config["family"])
    available = family.towers(model, 1, seq_len)
    towers = tuple(towers or available)
    unknown = [t for t in towers if t not in available]
    if unknown:
        raise BundleError(f"towers {unknown} do not exist; {family.name} models have {', '.join(available)}")
    context_length = available["text"].inputs[0].shape[1] if "text" in towers else None
    info = model_info(family, config, context_length)
    references = [family_reference(available[t], family, info) for t in towers]
    extra = tokenizer_files(family) if "text" in towers else {}
    if labels is not None:
        info["labels"], label_files = _baked_labels(available, family, config, labels, prompt)
        extra.update(label_files)
    variants = bundle_variants(target, baseline is not None)
    # The tower a batch size is compiled for: the image tower, or a text-only bundle's text tower
    # (a sentence encoder's one tower); a CLIP's text tower embeds labels and queries one at a time.
    batched = "image" if "image" in towers else "text"
    modules = []
    for variant in variants:
        for size in batches:
            names = list(towers) if size == 1 else [batched]
            modules += _variant_modules(model, family, variant, names, size, target.cores, seq_len)
    name = Path(checkpoint).resolve().name
    return write_model_bundle(out_dir, name, target, modules, references, info, extra, variants)


def _variant_modules(model, family: ModelFamily, variant: Variant, towers: list[str], batch: int,
                     threads: int, seq_len: int | None) -> list[BundleModule]:
    """The `towers` of one variant compiled for `batch` rows (text towers padded to `seq_len`):
    ternary through the lowering for the variant's kernel family, fp32 through TVM's stock pipeline."""
    if variant.precision == "fp32":
        float_towers = family.towers(model, batch, seq_len)
        return [BundleModule(t, variant.name, _float_executable(float_towers[t], variant.target), batch=batch)
                for t in towers]
    from edgeclip.lower.build import compile as lower_compile

    compiled = lower_compile(model, variant.target, towers=towers, act="int8", threads=threads, batch=batch,
                             seq_len=seq_len)
    return [BundleModule(t, variant.name, compiled.towers[t].executable, packed_weights=compiled.towers[t].weights,
                         batch=batch) for t in towers]


def _baked_labels(available: dict, family: ModelFamily, config: dict, labels: list[str],
                  prompt: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest's `labels` entry and its two members: the prompted labels embedded by the
    PyTorch text tower through the family's tokenizer (needed even when the text tower is not bundled)."""
    if "text" not in available:
        raise BundleError(f"--labels needs a text tower to embed the labels, and {family.name} models have none")
    fields = model_info(family, config, available["text"].inputs[0].shape[1])["tokenizer"]
    tokenize = family.text.tokenizer(family.text.installed_vocab(), fields)
    count = len(available["text"].inputs)
    embeddings = baked.label_embeddings(available["text"], lambda text: tokenize(text)[:count], labels, prompt)
    entry = {"names": baked.NAMES, "embeddings": baked.EMBEDDINGS, "count": len(labels), "prompt": prompt}
    return entry, {baked.NAMES: ("\n".join(labels) + "\n").encode("utf-8"), baked.EMBEDDINGS: npy_bytes(embeddings)}


def _float_executable(tower, target: Target):
    """The tower with every weight folded into a float32 constant, compiled without ternary kernels."""
    import tvm
    from tvm import relax

    from edgeclip.lower.importer import import_tower

    mod = relax.transform.FoldConstant()(import_tower(tower))
    return tvm.compile(mod, target=tvm.target.Target(target.tvm_cpu))


def family_reference(tower, family: ModelFamily, info: dict) -> TowerReference:
    """The fixed input of a tower (a seeded noise image through the family's real preprocessing /
    a fixed prompt through its real tokenizer) and what the PyTorch tower returns for it."""
    import torch
    from PIL import Image

    if tower.name == "image":
        preprocessing = info["preprocessing"]
        size, channels = preprocessing["image_size"], preprocessing["channels"]
        shape = (size, size) if channels == 1 else (size, size, channels)
        noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        inputs = (family.image.pixels(Image.fromarray(noise), preprocessing),)
        extra = {"description": "seeded noise image, preprocessed"}
    elif tower.name == "text":
        inputs = family.text.tokenizer(family.text.installed_vocab(), info["tokenizer"])(REFERENCE_TEXT)
        extra = {"text": REFERENCE_TEXT}
    else:
        raise BundleError(f"tower {tower.name!r} unknown; bundles have towers {', '.join(TOWERS)}")
    with torch.no_grad():
        output = tower.module(*(torch.from_numpy(x) for x in inputs)).numpy()
    return TowerReference(tower.name, inputs, (output,), extra)
