"""The device runtime as a user meets it on the host: load, classify, embed, serve (not a test).

usage: python bench/device.py [--shape vit-b-32|tiny] [--target x86-64] [--repeats 3] [--rebuild]

The runner picks the fat bundle's ternary variant this CPU runs best (`ternary_variant` in the JSON).

Builds (once per committed source tree, cached in bench/.cache/) a ternary bundle of a randomly
initialised CLIP of the given shape with the fp32 baseline, baked labels and the image tower
compiled for batch 1 and 8, extracts it with edgeclip's verifying extractor and runs its
`bin/edgeclip-runner` natively on 640×480 JPEGs made from scikit-image's sample photos:

- load: wall time from starting `serve` to its answer to one `tokenize` request (process start,
  plan, tokenizer, towers; tokenizing is microseconds), ternary and fp32 in alternation, all towers
  and the image tower alone; plus `bench`'s own load_ms for the ternary towers.
- classify: round trip of a `classify` request (baked labels) to one `serve` process: decode,
  preprocess, image tower, ranking. Decode + preprocess: the runner times each stage itself
  (`bench --tower image --image PHOTO`: decode, resize + crop + normalise, tower, in one process),
  photo by photo; the share is their sum over decode + preprocess + tower.
- embed: `embed --image DIR --batch N --out F.npy`, one process per folder; images/s in the steady
  state from the difference of 64 and 32 images (start and load cancel), and the 32-image run whole.
- tower: `bench --tower image --batch N`, the image tower alone on the reference input.
- text: `embed` requests with a text to `serve` (tokenize + text tower), and `tokenize` alone.
- serve peak RSS: VmHWM of the `serve` process after all of the above requests, before it exits.

Every figure is a median (min beside it) over `--repeats` rounds of its measurement. Writes
bench/results/device-<shape>-<target>.json; bench/tables.py renders its README table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from clip_shapes import SHAPES, random_clip_dir
from host_facts import host, save, source_key
from PIL import Image
from skimage import data as samples

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.formats.manifest import variant_rows
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
BATCHES = (1, 8)
TERNARY = ["ternary"]  # the ternary variant this CPU runs, set once the bundle is open (main)
LABELS = ("an astronaut", "a cup of coffee", "a cat", "a rocket", "a galaxy", "a microscope slide", "a retina",
          "a dog", "a bicycle", "a city street")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
TEXTS = tuple(f"a photo of {label}, taken {when}" for label in LABELS for when in ("at noon", "at night"))


def cached_bundle(shape: str, target: str, rebuild: bool) -> tuple[Path, float | None]:
    """A ternary + fp32 bundle of `shape` with baked labels, built once per source tree.

    Returns the bundle and its build seconds (None when it came from the cache)."""
    folder = CACHE / f"device-{shape}-{target}-{source_key()}"
    found = sorted(folder.glob("*.edgeclip"))
    if found and not rebuild:
        return found[0], None
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp:
        teacher = random_clip_dir(Path(tmp) / "teacher", shape)
        _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), Path(tmp) / f"clip-{shape}")
        start = time.perf_counter()
        bundle = build_bundle(checkpoint, target, folder, baseline="fp32", labels=list(LABELS), batches=BATCHES)
        return bundle, round(time.perf_counter() - start, 1)


def write_photos(folder: Path, count: int) -> list[Path]:
    """`count` 640×480 JPEGs (quality 90): the sample photos in turn, every other round mirrored."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        photo = Image.fromarray(getattr(samples, PHOTOS[i % len(PHOTOS)])()).convert("RGB").resize((640, 480))
        if (i // len(PHOTOS)) % 2:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        paths.append(folder / f"photo{i:03d}.jpg")
        photo.save(paths[-1], quality=90)
    return paths


class Server:
    """One `edgeclip-runner serve` process on stdin/stdout, timed request by request."""

    def __init__(self, runner: Path, folder: Path, variant: str, towers: str):
        self.started = time.perf_counter()
        self.process = subprocess.Popen([str(runner), "serve", "--bundle", str(folder), "--variant", variant,
                                         "--towers", towers], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.count = 0

    def ask(self, request: dict) -> tuple[dict, float]:
        """The reply to `request` and its round trip in seconds; an error reply raises."""
        self.count += 1
        start = time.perf_counter()
        self.process.stdin.write(json.dumps({"id": self.count, **request}) + "\n")
        line = self.process.stdout.readline()
        seconds = time.perf_counter() - start
        reply = json.loads(line) if line else {"error": f"serve exited with status {self.process.wait()}"}
        if "error" in reply:
            raise RuntimeError(f"serve answered {request} with {reply['error']}")
        return reply["result"], seconds

    def memory_kb(self) -> dict:
        """VmRSS (now) and VmHWM (peak) of the live process, in kB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_rss_kb": int(fields["VmHWM"].split()[0])}

    def close(self) -> None:
        self.process.stdin.close()
        if self.process.wait(timeout=60) != 0:
            raise RuntimeError(f"serve exited with status {self.process.returncode}")


@contextmanager
def serving(runner: Path, folder: Path, variant: str = "", towers: str = "image,text"):
    server = Server(runner, folder, variant or TERNARY[0], towers)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.close()


def summary(seconds: list[float]) -> dict:
    """Median and min of timings, in ms."""
    return {"median_ms": round(1000 * statistics.median(seconds), 2), "min_ms": round(1000 * min(seconds), 2),
            "n": len(seconds)}


def wall(cmd: list[str]) -> float:
    """Seconds one runner process takes to succeed."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.strip()}")
    return seconds


def measure_load(runner: Path, folder: Path, repeats: int) -> dict:
    """Start-to-first-answer of serve per variant and tower set, in alternation, and its memory then."""
    cases = [(variant, towers) for variant in (TERNARY[0], "fp32") for towers in ("image,text", "image")]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    memory: dict[tuple, dict] = {}
    for _ in range(repeats + 1):  # the first round only warms the page cache
        for case in cases:
            with serving(runner, folder, *case) as server:
                server.ask({"op": "tokenize", "text": "a cat"})
                times[case].append(time.perf_counter() - server.started)
                memory[case] = server.memory_kb()
    return {f"{variant} {towers}": {**summary(times[(variant, towers)][1:]), **memory[(variant, towers)]}
            for variant, towers in cases}


def measure_classify(runner: Path, folder: Path, photos: list[Path], repeats: int) -> dict:
    """Per-photo classify round trips in one serve process (what a client waits for), and the
    runner's own split of the same work per 640×480 JPEG (`bench --image`: decode, preprocess and
    image tower timed in one process, photo by photo in alternation): the decode + preprocess share."""
    trips = []
    with serving(runner, folder, towers="image") as server:
        server.ask({"op": "classify", "image": str(photos[0])})  # first call: lazy allocations
        for _ in range(repeats):
            trips += [server.ask({"op": "classify", "image": str(path)})[1] for path in photos]
    stages: dict[str, list[float]] = {"decode": [], "preprocess": [], "tower": []}
    for _ in range(repeats):
        for path in photos:
            split = bench(runner, folder, "--tower", "image", "--image", str(path), "--runs", "10",
                          "--warmup", "2")["towers"]["image"]["stages_ms"]
            for name in stages:
                stages[name].append(split[name]["p50"])
    medians = {name: round(statistics.median(times), 3) for name, times in stages.items()}
    pre = medians["decode"] + medians["preprocess"]
    return {"round_trip": summary(trips), "stages_ms_p50": medians, "decode_preprocess_ms": round(pre, 3),
            "decode_preprocess_share": round(pre / (pre + medians["tower"]), 3)}


def measure_embed(runner: Path, folder: Path, small: Path, large: Path, repeats: int) -> dict:
    """images/s of `embed --batch N` per batch size: steady (64 − 32 images) and whole 32-image runs."""
    counts = {d: len(list(d.glob("*.jpg"))) for d in (small, large)}
    runs: dict[tuple, list[float]] = {(b, d): [] for b in BATCHES for d in (small, large)}
    for _ in range(repeats):
        for key in runs:  # alternation: every batch size and folder sees the same machine load
            batch, images = key
            runs[key].append(wall([str(runner), "embed", "--bundle", str(folder), "--image", str(images),
                                   "--batch", str(batch), "--out", str(folder.parent / "embed.npy")]))
    result = {}
    for batch in BATCHES:
        whole, more = statistics.median(runs[(batch, small)]), statistics.median(runs[(batch, large)])
        result[str(batch)] = {
            "images_per_s": round((counts[large] - counts[small]) / (more - whole), 1),
            "images_per_s_whole_process": round(counts[small] / whole, 1),
            f"process_{counts[small]}_images": summary(runs[(batch, small)]),
            f"process_{counts[large]}_images": summary(runs[(batch, large)]),
        }
    return result


def measure_tower(runner: Path, folder: Path, repeats: int) -> dict:
    """The runner's own timing of the image tower per batch size (in alternation), and its load_ms per tower."""
    calls: dict[int, list[float]] = {b: [] for b in BATCHES}
    loads: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(repeats):
        for batch in BATCHES:
            report = bench(runner, folder, "--tower", "image", "--runs", "10", "--warmup", "2", "--batch", str(batch))
            calls[batch].append(report["latency_ms"]["p50"])
            loads[batch].append(report["load_ms"])
    result = {}
    for batch in BATCHES:
        per_call = statistics.median(calls[batch])
        result[str(batch)] = {"per_call_ms_p50": round(per_call, 2), "per_image_ms": round(per_call / batch, 2),
                              "load_ms": round(statistics.median(loads[batch]), 1)}
    report = bench(runner, folder, "--runs", "1", "--warmup", "0")
    result["load_ms_per_tower"] = {name: round(t["load_ms"], 1) for name, t in report["towers"].items()}
    result["cosine_to_reference"] = report["cosine_to_reference"]
    return result


def bench(runner: Path, folder: Path, *args: str) -> dict:
    """`edgeclip-runner bench` on the best ternary variant (without --variant it would time them all)."""
    return json.loads(subprocess.run([str(runner), "bench", "--bundle", str(folder), "--variant", TERNARY[0], *args],
                                     capture_output=True, text=True, check=True, timeout=900).stdout)


def best_ternary_variant(runner: Path, manifest: dict) -> str:
    """The ternary variant the runner picks on this CPU: the first whose CPU features it has
    (a fat bundle names them `ternary-FAMILY`)."""
    have = set(json.loads(subprocess.run([str(runner), "cpu"], capture_output=True, text=True,
                                         check=True).stdout)["features"])
    for row in variant_rows(manifest):
        if row["precision"] == "ternary" and set(row["cpu_features"]) <= have:
            return row["name"]
    raise SystemExit(f"this CPU runs no ternary variant of the bundle (it has {sorted(have)})")


def measure_serve(runner: Path, folder: Path, photos: list[Path], repeats: int) -> dict:
    """Text embedding and tokenize round trips, then the serve process's peak RSS after a request mix."""
    with serving(runner, folder) as server:
        server.ask({"op": "embed", "text": "warm up"})
        text = [server.ask({"op": "embed", "text": t})[1] for _ in range(repeats) for t in TEXTS]
        tokenize = [server.ask({"op": "tokenize", "text": t})[1] for _ in range(repeats) for t in TEXTS]
        for path in photos[:5]:
            server.ask({"op": "classify", "image": str(path)})
            server.ask({"op": "embed", "image": str(path)})
            server.ask({"op": "classify", "image": str(path), "labels": list(LABELS[:4]), "prompt": "a photo of {}"})
        memory = server.memory_kb()
        return {"text_embed_round_trip": summary(text), "tokenize_round_trip": summary(tokenize),
                "requests": server.count, **memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vit-b-32")
    parser.add_argument("--target", default="x86-64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the bundle even if one is cached")
    args = parser.parse_args()

    bundle, build_s = cached_bundle(args.shape, args.target, args.rebuild)
    result = {"shape": args.shape, "target": args.target, "bundle": bundle.name, "build_seconds": build_s,
              "repeats": args.repeats, "host_before": host()}
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp, local.extracted(bundle) as (folder, manifest):
        TERNARY[0] = best_ternary_variant(folder / "bin" / "edgeclip-runner", manifest)
        result["ternary_variant"] = TERNARY[0]
        photos = write_photos(Path(tmp) / "photos", 32)
        write_photos(Path(tmp) / "more", 64)
        runner = folder / "bin" / "edgeclip-runner"
        steps = {"load": lambda: measure_load(runner, folder, args.repeats),
                 "classify": lambda: measure_classify(runner, folder, photos[:len(PHOTOS)], args.repeats),
                 "embed": lambda: measure_embed(runner, folder, Path(tmp) / "photos", Path(tmp) / "more", args.repeats),
                 "tower": lambda: measure_tower(runner, folder, args.repeats),
                 "serve": lambda: measure_serve(runner, folder, photos, args.repeats)}
        for name, step in steps.items():
            start = time.perf_counter()
            result[name] = step()
            print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    result["host_after"] = host()
    result["goals"] = goals(result)
    save(result, f"device-{args.shape}-{args.target}.json")



def goals(result: dict) -> dict:
    """issue 17's goals, met or not, from the figures just measured."""
    load = result["load"][f"{result['ternary_variant']} image,text"]["median_ms"]
    share = result["classify"]["decode_preprocess_share"]
    return {"ternary_load_le_300_ms": {"measured_ms": load, "met": load <= 300},
            "decode_preprocess_le_10_percent": {"measured": share, "met": share <= 0.10}}


if __name__ == "__main__":
    main()
