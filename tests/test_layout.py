"""The package tree states the architecture: dependencies point one way, no cycles, modules of one job.

Layers, lowest first; a module may import its own layer and the layers below, never above:
    body, threads < formats < rigs < data < prior < motion < engine < service < bench < the command line
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "gfpose_core"
LAYER = {"body": 0, "threads": 0, "formats": 1, "rigs": 2, "data": 3, "prior": 4, "motion": 5, "engine": 6,
         "service": 7, "bench": 8}
# The command line is the top: `gfpose bench` is one of its commands, and the benchmark times the server.
TOP = {"gfpose_core.service.cli": 9, "gfpose_core.__main__": 9, "gfpose_core.cli": 9}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """gfpose_core modules that `name` imports anywhere in its file (module level or inside functions)."""
    mods = _modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gfpose_core"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if not base.startswith("gfpose_core"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in mods else base)
    return {m for m in found if m in mods and m != name}


def _layer(module: str) -> int | None:
    if module in TOP:
        return TOP[module]
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_dependencies_point_down_the_layers():
    wrong = []
    for name, path in _modules().items():
        mine = _layer(name)
        if mine is None:          # the package's own __init__: a lazy facade over Engine and load_take
            continue
        for dep in _imports(path, name):
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                wrong.append(f"{name} -> {dep}")
    assert not wrong, "imports that point up the layers: " + ", ".join(sorted(wrong))


def test_no_import_cycle():
    graph = {name: _imports(path, name) for name, path in _modules().items()}
    graph = {k: {d for d in v if _layer(d) is not None} for k, v in graph.items() if _layer(k) is not None}
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_no_module_over_500_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    long.update({f"blender_addon.{p.stem}": n for p in (ROOT / "blender_addon").glob("*.py")
                 if (n := len(p.read_text().splitlines())) > MAX_LINES})
    assert not long, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("entry, forbidden", [
    ("import gfpose_core.engine", ("gfpose_core.bench", "gfpose_core.formats", "gfpose_core.rigs",
                                   "gfpose_core.service", "gfpose_core.data")),
    ("import gfpose_core.rigs.solve", ("gfpose_core.engine", "gfpose_core.prior", "gfpose_core.motion",
                                       "gfpose_core.bench", "torch")),
    ("import gfpose_core.formats.bvh", ("gfpose_core.engine", "gfpose_core.rigs", "torch")),
    ("import gfpose_core.service.cli", ("gfpose_core.bench.run", "gfpose_core.engine", "torch")),
    # the add-on's decisions are plain Python: testable without the Blender module
    ("import blender_addon.plan", ("bpy", "mathutils", "bpy_extras", "torch", "gfpose_core")),
])
def test_importing_a_layer_loads_nothing_above_it(entry, forbidden):
    """Checked in a fresh interpreter through sys.modules, so lazy imports and re-exports count as they run."""
    code = f"import sys; {entry}; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    hits = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not hits, f"{entry} loaded {hits}"


def test_the_addon_never_imports_torch_or_the_engine():
    for p in (ROOT / "blender_addon").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("torch", "gfpose_core") for n in names), f"{p.name} imports {names}"


def test_the_first_releases_engine_command_still_runs():
    """Add-ons of the first release start `python -m gfpose_core.cli serve`; it is the same command as before."""
    out = subprocess.run([sys.executable, "-m", "gfpose_core.cli", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "serve" in out and "denoise" in out
