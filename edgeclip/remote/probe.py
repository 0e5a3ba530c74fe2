"""What the board is, asked before anything is uploaded: architecture, OS, cores, memory, CPU or
board model, its CPU features, free disk, governor, temperature and power sensors. The features
come from the auxiliary vector on aarch64 (`od` of /proc/self/auxv: the kernel's hwcaps, which
qemu-user fakes from its -cpu, where /proc/cpuinfo would show the host) and from the cpuinfo
flags on x86-64, named as edgeclip.formats.cpu_features names them. One constant POSIX script so the
probe works on any Linux userland (no Python needed on the board) and costs one round trip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeclip.errors import RemoteError
from edgeclip.formats import cpu_features
from edgeclip.remote.connect import Connection
from edgeclip.remote.diagnose import explain

_ARCH_ALIASES = {"arm64": "aarch64", "aarch64": "aarch64", "amd64": "x86_64", "x86_64": "x86_64", "x64": "x86_64"}

PROBE_SCRIPT = r"""
kv() { printf '%s=%s\n' "$1" "$2"; }
first_line() { [ -r "$1" ] && { IFS= read -r line < "$1" || [ -n "$line" ]; } && printf '%s' "$line" | tr -d '\000'; }
kv arch "$(uname -m)"
kv kernel "$(uname -sr)"
kv os "$( (. /etc/os-release && printf '%s' "$PRETTY_NAME") 2>/dev/null || uname -s)"
kv cores "$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo 2>/dev/null)"
if [ -r /proc/meminfo ]; then
  while read -r key value _; do
    case $key in MemTotal:) kv mem_total_kb "$value";; MemAvailable:) kv mem_available_kb "$value";; esac
  done < /proc/meminfo
fi
for f in /proc/device-tree/model /sys/firmware/devicetree/base/model; do
  [ -r "$f" ] && { kv board "$(tr -d '\000' < "$f")"; break; }
done
kv cpu_model "$(grep -m1 -E '^(model name|Hardware|Processor|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
kv cpu_part "$(grep -m1 '^CPU part' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
kv home "$HOME"
kv auxv "$(od -An -tx8 -v /proc/self/auxv 2>/dev/null | tr -s ' \n' '  ')"
kv cpu_flags "$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
set -- $(df -Pk "$HOME" 2>/dev/null | tail -n 1)
kv disk_free_kb "${4:-}"
kv governor "$(first_line /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor)"
kv temperature_mc "$(first_line /sys/class/thermal/thermal_zone0/temp)"
missing=
for tool in sha256sum tar mktemp readlink df; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
kv missing_tools "$missing"
kv power_sensors "$(ls /sys/class/hwmon/hwmon*/power*_input /sys/bus/i2c/drivers/ina3221*/*/iio:device*/in_power*_input 2>/dev/null | tr '\n' ' ')"
"""


def normalize_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.strip().lower(), arch.strip().lower())


@dataclass(frozen=True)
class DeviceInfo:
    arch: str
    kernel: str
    os: str
    home: str
    cores: int | None = None
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None
    board: str | None = None
    cpu_model: str | None = None
    cpu_part: str | None = None
    disk_free_kb: int | None = None
    governor: str | None = None
    temperature_c: float | None = None
    missing_tools: tuple[str, ...] = ()
    power_sensors: tuple[str, ...] = field(default_factory=tuple)
    cpu_features: tuple[str, ...] | None = None  # None: the board did not say

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        model = self.board or self.cpu_model or "unknown CPU"
        memory = f"{self.mem_total_kb // 1024} MiB" if self.mem_total_kb else "? MiB"
        return f"{model}, {self.arch}, {self.cores or '?'} cores, {memory}, {self.os}"


def probe(conn: Connection) -> DeviceInfo:
    result = conn.run_script(PROBE_SCRIPT, timeout=60)
    if not result.ok:
        raise explain(result, "probing the device", str(conn.endpoint))
    return parse_probe(result.out)


def parse_probe(text: str) -> DeviceInfo:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not values.get("arch") or not values.get("home"):
        raise RemoteError(f"the device answered the probe with {text[:200]!r}; is its login shell a POSIX shell?")
    temperature = _int(values.get("temperature_mc"))
    return DeviceInfo(
        arch=normalize_arch(values["arch"]),
        kernel=values.get("kernel", ""),
        os=values.get("os", ""),
        home=values["home"],
        cores=_int(values.get("cores")),
        mem_total_kb=_int(values.get("mem_total_kb")),
        mem_available_kb=_int(values.get("mem_available_kb")),
        board=values.get("board") or None,
        cpu_model=values.get("cpu_model") or None,
        cpu_part=values.get("cpu_part") or None,
        disk_free_kb=_int(values.get("disk_free_kb")),
        governor=values.get("governor") or None,
        temperature_c=None if temperature is None else temperature / 1000,
        missing_tools=tuple(values.get("missing_tools", "").split()),
        power_sensors=tuple(values.get("power_sensors", "").split()),
        cpu_features=_features(normalize_arch(values["arch"]), values),
    )


def _features(arch: str, values: dict) -> tuple[str, ...] | None:
    """The table's features the probe's auxv words (aarch64) or cpuinfo flags (x86-64) show."""
    if arch == "aarch64" and values.get("auxv", "").strip():
        try:
            return tuple(cpu_features.from_auxv([int(word, 16) for word in values["auxv"].split()]))
        except ValueError:
            return None
    if arch in cpu_features.FEATURES and arch != "aarch64" and values.get("cpu_flags", "").strip():
        return tuple(cpu_features.from_flags(arch, values["cpu_flags"]))
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None
