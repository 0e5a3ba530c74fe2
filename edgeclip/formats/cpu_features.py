"""CPU features a bundle's code needs, in the names Linux gives them (/proc/cpuinfo, hwcaps).

One table maps the LLVM features of a module's TVM target (what `-mcpu`/`-mattr` switch on) to
those names. It lists only features LLVM may use in generated compute code without intrinsics
or that our kernels use through intrinsics (SIMD, dot product, FMA, BMI, ...), never ones
reached only by explicit intrinsics we do not call (AES, SHA, CRC): LLVM's Cortex-A72 model has
AES, the Pi 4's BCM2711 has not, and requiring it would refuse a real Pi 4. The manifest
schema allows exactly these names; `edgeclip verify --cpu-features` checks them offline, the
runner and libedgeclip at load (runner/cpu_features.h holds the same table, with where each bit
is), deploy, profile, the --host verbs and flash on the board before sending anything.
Standard library only.
"""

from __future__ import annotations

# arch -> {LLVM feature: (Linux name, what it is)}
FEATURES = {
    "aarch64": {
        "neon": ("asimd", "Advanced SIMD"),
        "dotprod": ("asimddp", "dot product"),
        "fullfp16": ("asimdhp", "half-precision arithmetic"),
        "i8mm": ("i8mm", "int8 matrix multiply"),
        "bf16": ("bf16", "bfloat16"),
        "sve": ("sve", "scalable vectors"),
    },
    "x86_64": {
        "sse3": ("pni", "SSE3"),
        "ssse3": ("ssse3", "SSSE3"),
        "sse4.1": ("sse4_1", "SSE4.1"),
        "sse4.2": ("sse4_2", "SSE4.2"),
        "popcnt": ("popcnt", "POPCNT"),
        "lzcnt": ("abm", "LZCNT"),
        "movbe": ("movbe", "MOVBE"),
        "bmi": ("bmi1", "BMI1"),
        "bmi2": ("bmi2", "BMI2"),
        "avx": ("avx", "AVX"),
        "avx2": ("avx2", "AVX2"),
        "fma": ("fma", "FMA"),
        "f16c": ("f16c", "half-precision conversion"),
        "avx512f": ("avx512f", "AVX-512"),
        "avx512bw": ("avx512bw", "AVX-512 byte/word"),
        "avx512dq": ("avx512dq", "AVX-512 dword/qword"),
        "avx512vl": ("avx512vl", "AVX-512 vector length"),
        "avx512cd": ("avx512cd", "AVX-512 conflict detection"),
        "avx512vnni": ("avx512_vnni", "AVX-512 VNNI"),
        "avxvnni": ("avx_vnni", "AVX VNNI"),
        "avx512bf16": ("avx512_bf16", "AVX-512 bfloat16"),
    },
}
DESCRIPTIONS = {name: text for table in FEATURES.values() for name, text in table.values()}
ALLOWED = frozenset(DESCRIPTIONS)


def from_llvm(arch: str, llvm_features) -> list[str]:
    """The Linux names of the table's features among `llvm_features`, in table order."""
    have = set(llvm_features)
    return [name for feature, (name, _) in FEATURES[arch].items() if feature in have]


def parse_list(text: str) -> set[str]:
    """`--cpu-features a,b,c` (or a /proc/cpuinfo flags line: spaces work too) as a set of names."""
    return {word for word in text.replace(",", " ").split() if word}


def missing(required, have) -> list[str]:
    """The required features `have` lacks, in the order they are required."""
    have = set(have)
    return [name for name in required if name not in have]


def refusal(absent: list[str], alternatives: list[str]) -> str:
    """The one line that refuses code needing `absent` features, naming targets that fit instead
    (the runner's cpu_features.h words it the same)."""
    lacks = ", ".join(f"{name} ({DESCRIPTIONS.get(name, 'unknown')})" for name in absent)
    if alternatives:
        names = alternatives[0] if len(alternatives) == 1 else f"{', '.join(alternatives[:-1])} or {alternatives[-1]}"
        return f"this CPU lacks {lacks}: build with --target {names}"
    return (f"this CPU lacks {lacks}: build for a target whose features it has "
            "(`edgeclip targets` lists what each needs)")


# aarch64: where the auxiliary vector holds each feature, (AT_ type, bit), as the runner's
# cpu_features.h reads it with getauxval. The deploy probe decodes a board's /proc/self/auxv with it.
AT_HWCAP, AT_HWCAP2 = 16, 26
HWCAP_BITS = {"asimd": (AT_HWCAP, 1), "asimddp": (AT_HWCAP, 20), "asimdhp": (AT_HWCAP, 10),
              "i8mm": (AT_HWCAP2, 13), "bf16": (AT_HWCAP2, 14), "sve": (AT_HWCAP, 22)}
ONLY_VARIABLE = "EDGECLIP_CPU_FEATURES_ONLY"  # the runner's narrowing hook (a diagnosis aid)


def from_auxv(words: list[int]) -> list[str]:
    """The table's aarch64 features an auxiliary vector (its words: type, value, type, ...) holds."""
    vector = dict(zip(words[0::2], words[1::2], strict=False))
    return [name for name, (kind, bit) in HWCAP_BITS.items() if vector.get(kind, 0) >> bit & 1]


def from_flags(arch: str, flags: str) -> list[str]:
    """The table's features of `arch` a /proc/cpuinfo flags line names (x86-64 boards)."""
    have = parse_list(flags)
    return [name for name, _ in FEATURES[arch].values() if name in have]


def plan_needs(plan: str) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """The `variant` and `alternative` lines of a runner.plan: (name, features) each, in order."""
    found: dict[str, list] = {"variant": [], "alternative": []}
    for line in plan.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] in found:
            found[words[0]].append((words[1], [] if words[2] == "-" else words[2].split(",")))
    return found["variant"], found["alternative"]


def plan_refusal(plan: str, have, variants=None) -> str | None:
    """What the runner would refuse on a CPU with `have`, as its one line, or None: one of
    `variants` (names) it cannot run, or, without names, the CPU running none of the plan's."""
    declared, others = plan_needs(plan)
    names = list(variants or dict(declared))
    lacking = [lack for lack in (missing(dict(declared).get(name, []), have) for name in names) if lack]
    if not lacking or (not variants and len(lacking) < len(names)):
        return None
    lacks = lacking[0] if variants else min(lacking, key=len)
    return refusal(lacks, [name for name, features in others if not missing(features, have)])
