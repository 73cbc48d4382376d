"""The source files of the embedded runtime, as installed: what a plugin outside this repository
puts into every `model.pex`.

In this repository Pants finds `modelseal.embedded.runtime`, `modelseal.embedded.training` and the
modules they import by dependency inference. A repository that installs modelseal from a wheel
has no such sources, so the plugin asks the installed tool for them (`modelseal runtime-sources`):
the runtime embedded in a model is then exactly the version of the tool that packaged it. The
closure is followed through `modelseal.*` imports with `ast`, so nothing is imported to find it.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

from modelseal.errors import SpecError

ENTRY_MODULES = ("modelseal.embedded.runtime", "modelseal.embedded.training")
PACKAGE = "modelseal"


def _package_root() -> Path:
    """The directory that holds the `modelseal` package (site-packages, or a source root)."""
    return Path(__file__).resolve().parents[2]


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every `modelseal.*` module the file imports, absolute or relative, including `from X import
    name` where `X.name` is itself a module."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def runtime_closure(root: Path | None = None) -> list[str]:
    """Paths (relative to the package root, `/`-separated, sorted) of the runtime's modules and
    of every package `__init__.py` above them."""
    root = root or _package_root()
    seen: set[str] = set()
    files: set[Path] = set()
    pending = list(ENTRY_MODULES)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(root, module)
        if path is None:
            continue  # `from modelseal.x import name`: `modelseal.x.name` is not a module
        files.add(path)
        parts = module.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imported_modules(path, module))
    if not any(p.name == "runtime.py" for p in files):
        raise SpecError(
            what="the installed modelseal has no modelseal.embedded.runtime",
            where=str(root),
            remedy="reinstall the modelseal wheel",
        )
    return sorted(p.relative_to(root).as_posix() for p in files)


def copy_runtime_sources(out_dir: str) -> list[str]:
    """Copy the runtime's sources into OUT_DIR/modelseal/..., and return their relative paths."""
    root = _package_root()
    paths = runtime_closure(root)
    for relative in paths:
        target = os.path.join(out_dir, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(root / relative, target)
    return paths
