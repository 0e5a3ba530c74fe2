"""The device agent as one file, `edgeclip-agent.pyz`: a zipapp of the real source files of every
module `edgeclip/flash/agent.py` imports, so a board needs only python3 to receive a flash.

The modules are found by walking the imports with `ast` (in-function imports too), starting at
the agent. Anything outside the standard library, pyserial (optional on the device) and the
edgeclip modules the device side may use is refused, so the agent cannot grow heavy by accident.
The archive is deterministic: sorted members, fixed times and modes, no compression (so zlib's
version cannot change a byte either). The flash sources are read as data, by path: the bundle
layer sits below `edgeclip.flash` and never imports it.
"""

from __future__ import annotations

import ast
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from edgeclip.errors import BundleError

MEMBER = "bin/edgeclip-agent.pyz"  # where every bundle carries it
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the `edgeclip` package folder
ENTRY = "edgeclip.flash.agent"
ALLOWED = ("edgeclip.errors", "edgeclip.fsutil", "edgeclip.hostinfo", "edgeclip.console", "edgeclip.formats",
           "edgeclip.flash")
THIRD_PARTY = ("serial",)  # pyserial: used when the board has it, else edgeclip.flash.tty
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = f"import sys\n\nfrom {ENTRY} import main\n\nsys.exit(main())\n".encode()
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def agent_zipapp(package_dir: Path = PACKAGE_DIR) -> bytes:
    """The zipapp's bytes: the same sources always give the same bytes."""
    members = {"__main__.py": MAIN}
    for module, path in agent_sources(package_dir).items():
        members[_archive_name(module, path)] = path.read_bytes()
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.create_system = 3  # Unix, wherever it is built
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def write_agent(path) -> Path:
    """Write the zipapp to `path` atomically, executable (it starts with a python3 shebang)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(agent_zipapp())
        os.chmod(temporary, 0o755)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def agent_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """{module: source file} for the agent and everything it imports from edgeclip, with the
    `__init__.py` of every package on the way (importing a module runs them)."""
    found: dict[str, Path] = {}
    pending = [ENTRY]
    while pending:
        module = pending.pop()
        if module in found:
            continue
        path = _source(package_dir, module)
        if path is None:
            raise BundleError(f"the device agent imports {module}, which has no source file under {package_dir}; "
                              "reinstall edgeclip")
        found[module] = path
        parent = module.rpartition(".")[0]
        pending += [parent] if parent else []
        pending += [name for name in _imports(path, module, package_dir) if name.split(".")[0] == "edgeclip"]
    return found


def _imports(path: Path, module: str, package_dir: Path) -> list[str]:
    """Modules a source file imports, anywhere in it; refuses any the agent may not have."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            # `from pkg import name` may name a submodule: take it when it has a source file.
            found = [base] + [f"{base}.{a.name}" for a in node.names if _source(package_dir, f"{base}.{a.name}")]
        else:
            continue
        for name in found:
            _check(name, path, node.lineno)
        names += found
    return names


def _absolute(module: str | None, level: int, package: str) -> str:
    if not level:
        return module or ""
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{module}" if module else base


def _check(name: str, path: Path, line: int) -> None:
    top = name.split(".")[0]
    if top == "edgeclip":
        if name == "edgeclip" or any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED):
            return
    elif top in sys.stdlib_module_names or top in THIRD_PARTY:
        return
    raise BundleError(
        f"{path}:{line} imports {name}, but the device agent may import only the standard library, pyserial and "
        f"{', '.join(ALLOWED)}; keep that import out of the code the agent loads"
    )


def _source(package_dir: Path, module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "edgeclip":
        return None
    base = Path(package_dir).joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")) if parts[1:] else (base / "__init__.py",):
        if candidate.is_file():
            return candidate
    return None


def _archive_name(module: str, path: Path) -> str:
    return "/".join(module.split(".")) + ("/__init__.py" if path.name == "__init__.py" else ".py")
