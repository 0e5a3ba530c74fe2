"""The house keeps one direction of imports (docs/architecture.md).

Every module of the package is parsed, and every import it makes, in-function imports included
(imports for type annotations alone, under `if TYPE_CHECKING:`, are not run and not counted), is
checked against the layer list: a module may import its own layer and the layers below it, never
one above, and no set of modules may import each other in a circle.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folders of the package, by import name (pyproject's package-dir).
PACKAGE_DIRS = {"edgeclip": "edgeclip", "edgeclip.training": "training", "edgeclip.targets": "targets",
                "edgeclip.schedules": "schedules"}
# Bottom first; a module belongs to the longest prefix listed.
LAYERS = [
    ("edgeclip", "edgeclip.errors", "edgeclip.fsutil", "edgeclip.hostinfo", "edgeclip.console"),
    ("edgeclip.formats", "edgeclip.native"),
    ("edgeclip.quant", "edgeclip.models", "edgeclip.targets", "edgeclip.schedules"),
    ("edgeclip.export", "edgeclip.lower", "edgeclip.training", "edgeclip.pipeline"),
    ("edgeclip.bundle",),
    ("edgeclip.remote", "edgeclip.flash", "edgeclip.testbed"),
    ("edgeclip.demo",),
    ("edgeclip.cli",),
]
# Talking to boards stays light (the agent runs on one): edgeclip's two lowest layers, its own
# package, and nothing of the machine-learning stack.
LIGHT = ("edgeclip.remote", "edgeclip.flash")
HEAVY = {"torch", "tvm", "tvm_ffi", "transformers", "onnx", "onnxruntime", "safetensors"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(name: str, path: Path) -> set[str]:
    """Every module name `name` imports, at any depth of its code (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


GRAPH = {name: {n for n in _imports(name, path) if n in MODULES and n != name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    best, layer = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    assert layer is not None, f"{module} is in no layer; add it to LAYERS and docs/architecture.md"
    return layer


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_import_runs_up_a_layer():
    upward = [f"{m} (layer {_layer(m) + 1}) imports {t} (layer {_layer(t) + 1})"
              for m, targets in GRAPH.items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    state, stack, circles = {}, [], []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    # A package's __init__ importing its own submodules is not a circle of code.
    circles = [c for c in circles if not _only_package_faces(c)]
    assert not circles, "\n".join(circles)


def _only_package_faces(circle: str) -> bool:
    names = circle.split(" -> ")
    return any(MODULES[n].name == "__init__.py" and all(o.startswith(n + ".") or o == n for o in names)
               for n in names)


def test_remote_and_flash_stay_light():
    heavy = []
    for module, path in MODULES.items():
        if not module.startswith(LIGHT):
            continue
        for imported in sorted(_imports(module, path)):
            top = imported.split(".")[0]
            own = next(p for p in LIGHT if module.startswith(p))
            if top == "edgeclip":
                if imported in MODULES and _layer(imported) > 1 and not imported.startswith(own):
                    heavy.append(f"{module} imports {imported}")
            elif top in HEAVY:
                heavy.append(f"{module} imports {imported}")
    assert not heavy, "\n".join(heavy)


def test_help_of_every_verb_loads_no_heavy_library():
    script = ("import sys; from edgeclip.cli import build_parser; parser = build_parser(); "
              "verbs = parser._subparsers._group_actions[0].choices; "
              "[p.format_help() for p in verbs.values()]; parser.format_help(); "
              "print(len(verbs), sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY)))")
    done = subprocess.run([sys.executable, "-c", f"HEAVY = {sorted(HEAVY | {'paramiko', 'numpy'})!r}; {script}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) >= 15 and loaded.strip() == "[]", done.stdout


def test_the_cli_and_the_quantizer_agree_on_the_policies():
    from edgeclip.cli.options import POLICIES
    from edgeclip.quant.policy import POLICIES as QUANT_POLICIES

    assert POLICIES == QUANT_POLICIES
