"""Profile a deployed bundle on the board: run its native runner for the ternary and the fp32
baseline modules on the same input and put the figures side by side.

Only the runner contract is assumed: `<runner> bench --runs N --variant M`, run inside the installed
version folder, prints one JSON object with `module`, `load_ms`, `latency_ms: {p50, p90, p99}`,
`peak_rss_kb`, `cosine_to_reference`. Board power is sampled alongside when the probe found hwmon
or Jetson INA sensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from edgeclip.errors import RemoteError
from edgeclip.formats.bundle import output_floor, read_manifest, variant_rows, variant_towers
from edgeclip.remote.connect import Connection, Session, SshOptions
from edgeclip.remote.deploy import DeployResult, Layout, deploy
from edgeclip.remote.diagnose import explain
from edgeclip.remote.hosts import HostSpec
from edgeclip.remote.probe import DeviceInfo
from edgeclip.remote.upload import Progress

RUNNER_KEYS = ("module", "load_ms", "latency_ms", "peak_rss_kb", "cosine_to_reference")

# $1 folder, $2 runner, $3 runs, $4 module, $5.. power sensor files. Samples go to stderr as
# `edgeclip-power <file> <value>` lines; the runner's stdout is passed through untouched.
RUN_SCRIPT = r"""
dir=$1 runner=$2 runs=$3 module=$4
shift 4
cd "$dir" || exit 1
sampler=
if [ $# -gt 0 ]; then
  ( while :; do for f in "$@"; do read -r v < "$f" && printf 'edgeclip-power %s %s\n' "$f" "$v" >&2; done; sleep 0.1; done ) &
  sampler=$!
fi
"./$runner" bench --runs "$runs" --variant "$module"
status=$?
[ -n "$sampler" ] && kill "$sampler" 2>/dev/null
exit $status
"""


@dataclass(frozen=True)
class ModuleProfile:
    module: str
    load_ms: float
    latency_ms: dict[str, float]
    peak_rss_kb: int
    cosine_to_reference: float
    min_cosine: float
    power_w: float | None = None
    energy_mj_per_inference: float | None = None

    @property
    def output_ok(self) -> bool:
        return self.cosine_to_reference >= self.min_cosine


@dataclass(frozen=True)
class ProfileResult:
    host: str
    device: DeviceInfo
    bundle: dict
    runs: int
    modules: dict[str, ModuleProfile]
    deploy: DeployResult
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(m.output_ok for m in self.modules.values())

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "device": self.device.as_dict(),
            "bundle": self.bundle,
            "runs": self.runs,
            "modules": {name: {**asdict(m), "output_ok": m.output_ok} for name, m in self.modules.items()},
            "ratios": self.ratios,
            "output_check_passed": self.passed,
            "deploy": {k: v for k, v in self.deploy.as_dict().items() if k != "device"},
        }


def profile(
    bundle,
    host: HostSpec | str,
    options: SshOptions | None = None,
    *,
    runs: int = 20,
    modules: tuple[str, ...] | None = None,
    progress: Progress | None = None,
    timeout: float = 600.0,
) -> ProfileResult:
    """Deploy (a no-op when that version is already current), then run each module: by default
    every variant the bundle carries (the fp32 baseline only exists with `build --baseline fp32`)."""
    options = options or SshOptions()
    if runs < 1:
        raise RemoteError(f"--runs must be at least 1, not {runs}")
    manifest = read_manifest(bundle)
    runner = manifest["runner"]  # read_manifest's schema made it an executable member
    carried = variant_towers(manifest)
    named = modules  # the board's CPU must run each of these; by default any variant will do
    modules = modules or tuple(carried)
    missing = [m for m in modules if m not in carried]
    if missing:
        raise RemoteError(f"{bundle} has no {', '.join(missing)} module; rebuild it with `edgeclip build "
                          "--baseline fp32` to profile against the fp32 baseline")
    deployed = deploy(bundle, host, options, progress, variants=named)
    have = deployed.device.cpu_features
    if not named and have is not None:  # by default, every variant this board's CPU runs
        modules = tuple(row["name"] for row in variant_rows(manifest) if set(row["cpu_features"]) <= set(have))
    folder = Layout(deployed.device.home, deployed.name).current
    measured = {}
    with Session(host, options) as session:
        for module in modules:
            floor = output_floor(manifest, module)
            measured[module] = run_module(session.conn, folder, runner, module, runs, deployed.device, timeout, floor)
    return ProfileResult(
        host=deployed.host,
        device=deployed.device,
        bundle={
            "name": deployed.name,
            "target": manifest.get("target", {}),
            "version": deployed.version,
            "bytes": deployed.bytes,
            "model_bytes": sum(m["bytes"] for m in manifest["members"].values()),
        },
        runs=runs,
        modules=measured,
        deploy=deployed,
        ratios=ratios(measured),
    )


def run_module(conn: Connection, folder: str, runner: str, module: str, runs: int, device: DeviceInfo, timeout: float,
               min_cosine: float) -> ModuleProfile:
    args = (folder, runner, str(runs), module, *device.power_sensors)
    result = conn.run_script(RUN_SCRIPT, args, timeout=timeout)
    if not result.ok:
        raise explain(result, f"running the {module} module", str(conn.endpoint))
    report = parse_runner_output(result.out, module, str(conn.endpoint))
    power = mean_power_w(result.err)
    p50 = report["latency_ms"]["p50"]
    return ModuleProfile(
        module=module,
        load_ms=float(report["load_ms"]),
        latency_ms={k: float(report["latency_ms"][k]) for k in ("p50", "p90", "p99")},
        peak_rss_kb=int(report["peak_rss_kb"]),
        cosine_to_reference=float(report["cosine_to_reference"]),
        min_cosine=min_cosine,
        power_w=power,
        energy_mj_per_inference=None if power is None else power * float(p50),
    )


def parse_runner_output(text: str, module: str, host: str) -> dict:
    """The last line that parses as a JSON object with every contract key."""
    for line in reversed(text.strip().splitlines()):
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict) and all(k in report for k in RUNNER_KEYS):
            if not all(q in report["latency_ms"] for q in ("p50", "p90", "p99")):
                break
            return report
    raise RemoteError(
        f"{host}: the runner's output for {module} is not the expected JSON ({text.strip()[-200:]!r}); "
        "is the bundle's runner from this edgeclip version?"
    )


def mean_power_w(stderr: str) -> float | None:
    """Mean of the first sensor's samples: hwmon `power*_input` is in µW, Jetson INA `in_power*` in mW.
    Only the first sensor counts, because rails on one board overlap (VDD_IN already holds the CPU rail)."""
    samples: dict[str, list[float]] = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "edgeclip-power":
            try:
                samples.setdefault(parts[1], []).append(float(parts[2]))
            except ValueError:
                continue
    if not samples:
        return None
    sensor, values = next(iter(samples.items()))
    scale = 1e-3 if "iio:device" in sensor else 1e-6
    return sum(values) / len(values) * scale


def ratios(modules: dict[str, ModuleProfile]) -> dict[str, float]:
    """fp32 / ternary: above 1 means the ternary module is faster or smaller."""
    if "fp32" not in modules or "ternary" not in modules:
        return {}
    fp32, ternary = modules["fp32"], modules["ternary"]
    out = {}
    for quantile in ("p50", "p90", "p99"):
        if ternary.latency_ms[quantile] > 0:
            out[f"speedup_{quantile}"] = fp32.latency_ms[quantile] / ternary.latency_ms[quantile]
    if ternary.peak_rss_kb > 0:
        out["memory_ratio"] = fp32.peak_rss_kb / ternary.peak_rss_kb
    if ternary.load_ms > 0:
        out["load_ratio"] = fp32.load_ms / ternary.load_ms
    return out
