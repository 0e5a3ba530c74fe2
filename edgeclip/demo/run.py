"""`edgeclip demo`: the whole pipeline on the built-in default, into `runs/demo-<timestamp>/`.

Eight steps: 1 teacher -> 2 PTQ + QAT/KD student -> 3 evaluation -> 4 bundles for this
machine and rpi4 -> 5 predictions on real images -> 6 profiles -> 7 the rpi4 bundle used on the
emulated board (its runner classifies and embeds) -> 8 report.md (+ demo.json, PNG plots). Steps
4 and 6 run once per bundle, so the console counts nine steps before the report.
The first two are required; every later one is done, skipped with a reason, or recorded as
failed while the demo goes on. The command fails at the end if any step failed.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime
from pathlib import Path

from edgeclip import __version__, console
from edgeclip.demo import accuracy, bundles, device, embedding, models, predict, profiles, report
from edgeclip.demo.plan import Plan, plan_for
from edgeclip.demo.steps import Skip, Steps, busy
from edgeclip.errors import DemoError, TargetError, ToolchainError
from edgeclip.hostinfo import cpu_model

STEP_COUNT = 11


def run_demo(out=None, quick: bool = False, debug: bool = False) -> Path:
    """Run every step, write the report, and return its path; DemoError if a step failed."""
    plan = plan_for(quick)
    started = datetime.now()
    run = Path(out) if out else Path("runs") / f"demo-{started:%Y%m%d-%H%M%S}"
    run.mkdir(parents=True, exist_ok=True)
    console.move_log(run / "log.txt")
    began = time.perf_counter()
    record = {"plan": plan.name, "started": started.isoformat(timespec="seconds"), "edgeclip_version": __version__,
              "machine": _machine(), "device_target": bundles.DEVICE_TARGET, "bundles": {}, "profiles": {}}
    steps = Steps(STEP_COUNT, debug)
    record["machine"]["torch_threads"] = _use_idle_cores()
    steps.say(f"edgeclip demo ({plan.name}) -> {run}  [torch threads: {record['machine']['torch_threads']}, "
              f"load average {record['machine']['load_average_start'][0]:.2f} on {record['machine']['cores']} cores]")
    try:
        _pipeline(plan, run, record, steps)
    finally:
        record["steps"] = steps.as_dicts()
        record["seconds"] = time.perf_counter() - began
        record["machine"]["load_average_end"] = list(os.getloadavg())
        files = report.write(record, run)
        steps.say(f"\nreport: {files['markdown']} ({record['seconds']:.0f} s in all)")
    if steps.failed:
        raise DemoError(f"{len(steps.failed)} step(s) failed ({', '.join(r.title for r in steps.failed)}); "
                        f"see {files['markdown']}, or re-run with --debug for the traceback")
    return files["markdown"]


def _pipeline(plan: Plan, run: Path, record: dict, steps: Steps) -> None:
    teacher = steps.run("Teacher: the built-in Fashion-MNIST + MiniLM CLIP", lambda: models.teacher(plan),
                        required=True)
    trained = steps.run("Ternarize (q-all): PTQ, then QAT + distillation",
                        lambda: _ternarize(plan, teacher, run, record), required=True)
    ptq, student = trained
    steps.run("Evaluate teacher, PTQ and student (top-1 / top-5, retrieval)",
              lambda: _evaluate(plan, {"teacher": teacher, "ptq": ptq, "student": student}, record))
    host_target, no_host_target = _host_target()
    host_bundle = steps.run(f"Build the bundle for this machine ({host_target or platform.machine()})",
                            lambda: _build(plan, student, host_target, run, record, no_host_target))
    device_bundle = steps.run(f"Build the bundle for {bundles.DEVICE_TARGET}",
                              lambda: _build(plan, student, bundles.DEVICE_TARGET, run, record))
    predictions = steps.run("Classify real images with the host bundle (skimage photos, Fashion-MNIST)",
                            lambda: _predict(plan, host_bundle, student, run, record, steps),
                            needs={"the host bundle": host_bundle})
    steps.run("Profile the host bundle (native runner, ternary vs fp32; PyTorch fp32 for reference)",
              lambda: _profile_host(plan, host_bundle, host_target, teacher, record),
              needs={"the host bundle": host_bundle})
    steps.run(f"Profile the {bundles.DEVICE_TARGET} bundle on an emulated aarch64 device (correctness only)",
              lambda: _profile_device(plan, device_bundle, run, record, steps),
              needs={f"the {bundles.DEVICE_TARGET} bundle": device_bundle})
    steps.run(f"Use the {bundles.DEVICE_TARGET} bundle on the emulated board: classify and embed with its runtime",
              lambda: _use_on_board(device_bundle, predictions, student, run, record, steps),
              needs={f"the {bundles.DEVICE_TARGET} bundle": device_bundle, "the host predictions": predictions})
    sentence = steps.run("Embedding model: ternary all-MiniLM-L6-v2 (q-all), self-taught distillation",
                         lambda: _sentence_student(plan, run, record))
    steps.run(f"Bundle it for {bundles.DEVICE_TARGET}; index and search {plan.index_sentences:,} sentences on the "
              "emulated board", lambda: _sentence_search(plan, sentence, run, record),
              needs={"the ternary MiniLM": sentence})


def _ternarize(plan: Plan, teacher: Path, run: Path, record: dict):
    from edgeclip.pipeline import inspect_checkpoint

    ptq = models.ptq(teacher, run / "ptq")
    student, note, _ = models.student(plan, teacher, run / "demo-student")
    stats = inspect_checkpoint(student)
    record["sizes"] = {"fp32_weights_bytes": stats["fp32_size_bytes"], "teacher_checkpoint_bytes": _folder_bytes(teacher),
                       "student_checkpoint_bytes": stats["checkpoint_bytes"], "student_stats": stats}
    record.setdefault("artifacts", []).extend(["ptq/", "demo-student/", "demo-student.train/losses.png"])
    return (ptq, student), f"{note}; PTQ checkpoint in {run / 'ptq'}"


def _evaluate(plan: Plan, checkpoints: dict[str, Path], record: dict):
    from tqdm import tqdm

    scores, cached = {}, []
    for name, path in tqdm(checkpoints.items(), desc="  evaluating", unit="model", leave=False,
                           file=console.stream()):
        scores[name], hit = accuracy.evaluate(path, plan.eval_limit)
        if hit:
            cached.append(name)
    record["accuracy"] = scores
    note = " / ".join(f"{name} {100 * s['top1']:.1f} %" for name, s in scores.items())
    return scores, f"top-1 {note} on {scores['student']['samples']} images" + (
        f" ({', '.join(cached)} from the cache)" if cached else "")


def _host_target() -> tuple[str | None, str]:
    """(board to build for this machine, or None and why there is none)."""
    from edgeclip.lower.target import host_target

    try:
        return host_target(), ""
    except TargetError as err:
        return None, str(err)


def _build(plan: Plan, student: Path, target: str | None, run: Path, record: dict, no_target: str = ""):
    from edgeclip.native.toolchain import require_compiler
    from edgeclip.targets import load_target

    if target is None:
        raise Skip(no_target)
    try:
        require_compiler(*load_target(target).compiler)
    except ToolchainError as err:
        raise Skip(str(err)) from err
    what = "ternary" + (f" + {plan.baseline} baseline" if plan.baseline else "")
    with busy(f"compiling both towers for {target} ({what})"):
        bundle, hit = bundles.build(student, target, plan.baseline, run / "bundles")
    record["bundles"][target] = {"path": str(bundle.relative_to(run)),
                                 **bundles.sizes(bundle, record["sizes"]["fp32_weights_bytes"])}
    record.setdefault("artifacts", []).append(str(bundle.relative_to(run)))
    size = record["bundles"][target]
    return bundle, (f"{bundle.name}: {size['bundle_bytes'] / 1e6:.1f} MB tar, ternary payload "
                    f"{size['ternary_payload_bytes'] / 1e6:.2f} MB" + (" (from the cache)" if hit else ""))


def _predict(plan: Plan, bundle: Path, student: Path, run: Path, record: dict, steps: Steps):
    items, photos_missing = predict.samples(run / "images", plan.fashion_images, plan.photos)
    record["photos_missing"] = photos_missing
    rows = predict.predict(bundle, student, items)
    record["predictions"] = rows
    steps.say(f"  {'image':32} {'true class':18} {'bundle top-1':26} PyTorch top-1")
    for r in rows:
        bundle_top = f"{r['bundle']} ({100 * r['bundle_p']:.0f} %)"
        steps.say(f"  {r['name']:32} {r['truth'] or '-':18} {bundle_top:26} {r['torch']} ({100 * r['torch_p']:.0f} %)")
    agree = sum(r["bundle"] == r["torch"] for r in rows)
    note = f"{len(rows)} images; bundle and PyTorch agree on {agree}"
    return rows, note + (f"; {photos_missing}" if photos_missing else "")


def _profile_host(plan: Plan, bundle: Path, target: str, teacher: Path, record: dict):
    threads = record["machine"]["torch_threads"]
    result = profiles.host(bundle, plan.host_runs, threads)
    reference = profiles.torch_fp32(teacher, plan.host_runs)
    record["profiles"]["host"] = {"target": target, "runs": plan.host_runs, "threads": threads, "result": result,
                                  "torch_fp32": reference}
    ternary = result["modules"]["ternary"]["latency_ms"]["p50"]
    note = (f"ternary p50 {ternary:.1f} ms ({reference['latency_ms']['p50'] / ternary:.1f}× PyTorch fp32), "
            f"cosine {result['modules']['ternary']['cosine_to_reference']:.4f}")
    if result["ratios"]:
        note += (f"; vs the untuned TVM fp32 module: {result['ratios']['speedup_p50']:.1f}× faster, "
                 f"{result['ratios']['memory_ratio']:.1f}× less memory")
    return result, note


def _profile_device(plan: Plan, bundle: Path, run: Path, record: dict, steps: Steps):
    report_dir = run / f"{bundles.DEVICE_TARGET}-profile"
    try:
        emulated = profiles.emulated(bundle, plan.emulated_runs, report_dir, steps.say)
    except profiles.NoEmulator as err:
        record["profiles"]["device_skipped"] = str(err)
        raise Skip(str(err)) from err
    if (report_dir / "report.md").is_file():
        emulated["report"] = str((report_dir / "report.md").relative_to(run))
        record.setdefault("artifacts", []).append(emulated["report"])
    record["profiles"]["device"] = emulated
    modules = emulated["result"]["modules"]
    checks = ", ".join(f"{name} cosine {m['cosine_to_reference']:.4f} ({'pass' if m['output_ok'] else 'FAIL'})"
                       for name, m in modules.items())
    if not all(m["output_ok"] for m in modules.values()):
        raise DemoError(f"the {bundles.DEVICE_TARGET} bundle does not reproduce the reference: {checks}")
    return emulated, f"{emulated['mode']}: {checks}"


def _use_on_board(bundle: Path, predictions: list[dict], student: Path, run: Path, record: dict, steps: Steps):
    used = device.use_on_board(bundle, predictions, run / "images", student, run)
    record["on_device"] = used
    record.setdefault("artifacts", []).append(used["embed"]["file"])
    steps.say(f"  {'image':32} {'device top-1':26} PyTorch top-1")
    for r in used["classify"]:
        device_top = f"{r['device']} ({100 * r['device_p']:.0f} %)"
        steps.say(f"  {r['name']:32} {device_top:26} {r['torch']} ({100 * r['torch_p']:.0f} %)")
    embed = used["embed"]
    return used, (f"device and PyTorch agree on {used['agree']} of {len(used['classify'])} images; embedded "
                  f"{embed['count']} images, cosine to PyTorch min {embed['cosine_min']:.4f}")


def _sentence_student(plan: Plan, run: Path, record: dict):
    checkpoint, fidelity, note = embedding.student(plan, run / "minilm-student")
    record["embedding"] = {"fidelity": fidelity, "steps": plan.sentence.steps}
    record.setdefault("artifacts", []).append("minilm-student/")
    return checkpoint, note


def _sentence_search(plan: Plan, checkpoint: Path, run: Path, record: dict):
    bundle, sizes = embedding.build(checkpoint, run)
    record["embedding"]["sizes"] = sizes
    found = embedding.search_on_board(plan, bundle, checkpoint, run)
    record["embedding"]["search"] = found
    record.setdefault("artifacts", []).append(f"search/{embedding.INDEX}")
    return found, (f"{sizes['storage_saved']:.0%} less storage than the fp32 weights; board search recall@10 "
                   f"{found['recall_at_10_vs_teacher']:.3f} vs the float teacher's exact search, "
                   f"{found['recall_at_10_vs_student']:.3f} vs the student's")


def _machine() -> dict:
    return {"cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
            "load_average_start": list(os.getloadavg())}


def _use_idle_cores() -> int:
    """Torch threads = the cores other jobs leave idle (at least one): on an oversubscribed machine,
    spinning intra-op threads made training steps 3-10x slower than one thread (measured here)."""
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, min(cores, round(cores - os.getloadavg()[0])))
    torch.set_num_threads(threads)
    return threads


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())
