"""`compile(model, target)`: the single door from a (ternary) model to compiled tower modules.

Pipeline per tower: torch.export -> Relax -> ternary rewrite (family kernels) -> legalize +
fuse the float remainder -> the target's schedule rules (CPU, or DLight's GPU rules) -> `tvm.compile`. The result runs in-process
(`CompiledModel.encode`) and saves as one shared library per tower plus its 2-bit packed weights
(parameters of the module after the inputs, see `rewrite.py`) stored 1.6-bit, and a manifest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from edgeclip.errors import ModelError
from edgeclip.lower.fast_math import fast_math
from edgeclip.lower.gpu_pipeline import gpu_pipeline
from edgeclip.lower.importer import import_tower
from edgeclip.lower.kernels import ACTS
from edgeclip.lower.knobs import apply_kernel_records
from edgeclip.lower.records import load as load_records
from edgeclip.lower.rewrite import RewriteReport, rewrite_ternary
from edgeclip.lower.schedule import schedule_graph, unscheduled
from edgeclip.lower.target import LowerTarget, host_target, resolve_target
from edgeclip.models.sources import select_towers
from edgeclip.models.towers import InputSpec, Tower
from edgeclip.quant.packing import base3_from_2bit, two_bit_from_base3
from edgeclip.targets import Target

MANIFEST = "compiled.json"


FROM_STORE = "store"  # lower_module's default: the tuning records shipped for the target, if any


def prepare_module(mod: tvm.IRModule, target: LowerTarget, act: str, records=None) -> tuple[tvm.IRModule, RewriteReport]:
    """Rewrite + legalize + fuse: ternary kernels scheduled (with recorded knobs when `records`
    has them), the float remainder fused but unscheduled (what `edgeclip tune` tunes)."""
    mod, report = rewrite_ternary(mod, target, act)
    mod = apply_kernel_records(mod, report.kernels, target, records)
    mod = fast_math(mod)
    with target.tvm():
        mod = tvm.transform.Sequential([
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
        ])(mod)
    return mod, report


def lower_module(mod: tvm.IRModule, target: LowerTarget, act: str, records=FROM_STORE) -> tuple[tvm.IRModule, RewriteReport]:
    """Relax module -> fully scheduled module ready for `tvm.compile`. `records`: a meta_schedule
    database, None for none (DLight rules and hand knobs only), or the target's shipped store."""
    if isinstance(records, str) and records == FROM_STORE:
        records = load_records(target.tvm(), target.name)
    mod, report = prepare_module(mod, target, act, records)
    return schedule_graph(mod, target.tvm(), records), report


@dataclass
class CompiledTower:
    """One compiled encoder; call it with numpy arrays shaped like `inputs`. `weights` are the
    packed ternary weights the executable takes after the inputs."""

    name: str
    inputs: tuple[InputSpec, ...]
    executable: object
    weights: tuple[np.ndarray, ...] = ()
    report: RewriteReport = field(default_factory=RewriteReport)
    unscheduled: list[str] = field(default_factory=list)
    compile_seconds: float = 0.0
    device: str = "cpu"  # where it runs: "cpu" or "cuda" (the GPU's memory holds inputs and weights)
    _vm: object = None
    _weight_tensors: list = field(default_factory=list)

    def _device(self):
        if self.device == "cpu":
            return tvm.cpu()
        if not tvm.cuda(0).exist:
            raise ModelError(f"tower {self.name!r} is compiled for an NVIDIA GPU and this machine has none; "
                             "run it where the NVIDIA driver and a GPU are, or compile with --device cpu")
        return tvm.cuda(0)

    def vm(self) -> relax.VirtualMachine:
        if self._vm is None:
            dev = self._device()
            self._vm = relax.VirtualMachine(self.executable, dev)
            self._weight_tensors = [tvm.runtime.tensor(w, dev) for w in self.weights]
        return self._vm

    def __call__(self, *arrays) -> np.ndarray:
        if len(arrays) != len(self.inputs):
            raise ModelError(f"tower {self.name!r} takes {[s.name for s in self.inputs]}, got {len(arrays)} arrays")
        args = []
        for spec, array in zip(self.inputs, arrays, strict=True):
            array = np.ascontiguousarray(np.asarray(array), dtype=spec.dtype)
            if tuple(array.shape) != spec.shape:
                raise ModelError(f"{self.name}.{spec.name} has shape {array.shape}; compiled for {spec.shape}")
            args.append(array)
        vm = self.vm()
        dev = self._device()
        return vm["main"](*(tvm.runtime.tensor(a, dev) for a in args), *self._weight_tensors).numpy()


@dataclass
class CompiledModel:
    target: LowerTarget
    act: str
    family: str  # the model family's name
    towers: dict[str, CompiledTower]

    def encode(self, tower: str, *arrays) -> np.ndarray:
        if tower not in self.towers:
            raise ModelError(f"tower {tower!r} was not compiled; this module has {sorted(self.towers)}")
        return self.towers[tower](*arrays)

    def save(self, directory) -> Path:
        """One `<tower>.so` per tower and a manifest describing inputs, target and kernels."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"target": self.target.name, "tvm_target": self.target.tvm_target, "family": self.target.family,
                    "act": self.act, "model_family": self.family, "towers": {}}
        from edgeclip.native.toolchain import export_module

        for name, tower in self.towers.items():
            export_module(tower.executable, out / f"{name}.so", *self.target.board.compiler)
            weights = []
            for i, packed in enumerate(tower.weights):
                weights.append({"path": f"{name}.weight{i}.npy", "shape": list(packed.shape)})
                np.save(out / weights[-1]["path"], base3_from_2bit(packed), allow_pickle=False)
            manifest["towers"][name] = {
                "library": f"{name}.so",
                "packed_weights": weights,
                "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in tower.inputs],
                "ternary_ops": {"linear": tower.report.linears, "conv": tower.report.convs,
                                "embedding": tower.report.embeddings},
                "compile_seconds": round(tower.compile_seconds, 2),
            }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return out


def load_compiled(directory) -> dict[str, CompiledTower]:
    """The towers a `CompiledModel.save` wrote, ready to run on this machine."""
    root = Path(directory)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{root} is not a compiled edgeclip module ({err}); run `edgeclip compile` first") from err
    towers = {}
    for name, info in manifest["towers"].items():
        inputs = tuple(InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in info["inputs"])
        weights = tuple(two_bit_from_base3(np.load(root / w["path"]), w["shape"]) for w in info["packed_weights"])
        towers[name] = CompiledTower(name, inputs, tvm.runtime.load_module(str(root / info["library"])), weights,
                                     device=_device_of(manifest["tvm_target"]))
    return towers


def _device_of(tvm_target: dict) -> str:
    return "cuda" if tvm_target.get("kind") == "cuda" else "cpu"


def build_tower(mod: tvm.IRModule, tower: Tower, target: LowerTarget, act: str, records=FROM_STORE) -> CompiledTower:
    """Lower and compile an imported tower (import once, build for several modes)."""
    start = time.perf_counter()
    lowered, report = lower_module(mod, target, act, records)
    tvm_target = target.tvm()
    pipeline = "default" if target.device == "cpu" else gpu_pipeline(tvm_target)
    executable = tvm.compile(lowered, tvm_target, relax_pipeline=pipeline)
    return CompiledTower(tower.name, tower.inputs, executable, tuple(report.packed_weights), report, unscheduled(lowered),
                         time.perf_counter() - start, target.device)


def compile_tower(tower: Tower, target: LowerTarget, act: str, records=FROM_STORE) -> CompiledTower:
    start = time.perf_counter()
    compiled = build_tower(import_tower(tower), tower, target, act, records)
    compiled.compile_seconds = time.perf_counter() - start
    return compiled


def compile(model_or_ckpt, target: str | Target | None = None, towers=None, act: str = "int8",
            threads: int | None = None, seq_len: int | None = None, batch: int = 1, device: str = "cpu",
            cuda_arch: str | None = None) -> CompiledModel:  # noqa: A001 - the door's name
    """Compile the towers of a model (module, checkpoint dir or teacher spec) for `target` (a board
    or its name; default `host_target()`, the x86-64 member this machine runs best).

    act="int8" quantizes activations per token inside each ternary kernel; "fp32" keeps them float.
    `towers` picks e.g. ["image"]; default all the model has. `threads` defaults to every core.
    `batch`: the input rows each call takes (a static shape, as every kernel here is).
    `device="cuda"`: the whole tower runs on the board's NVIDIA GPU (`cuda_arch` names the arch of
    a board that leaves it open, `cuda-host`); weights stay parameters as on the CPU.
    """
    if act not in ACTS:
        raise ModelError(f"--act must be one of {ACTS}, got {act!r}")
    resolved = resolve_target(target or host_target(), threads, device, cuda_arch)
    family, selected = select_towers(model_or_ckpt, towers, seq_len, batch)
    compiled = {name: compile_tower(tower, resolved, act) for name, tower in selected.items()}
    return CompiledModel(resolved, act, family.name, compiled)
