"""Code hygiene as tests (as MixedModels.jl checks its own): no import cycles between pyglmm's
modules and no imports of another module's ``_private`` names. Function-level (lazy) imports
count: they hide a cycle from the interpreter, not from the design.

What is left of the debt issue 23 removes is listed below; the lists may only shrink. A new
cycle or private import fails, and so does a fixed one that is still listed (drop it here).
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pyglmm

PKG = Path(pyglmm.__file__).parent

#: modules still in an import cycle (none: the estimation methods are objects the results ask,
#: and `pyglmm.load` builds models outside the file format's module)
KNOWN_CYCLE: set[str] = set()
#: (importer, module, name) of the private imports left (none)
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()


def _modules(pkg: Path = PKG) -> dict[str, Path]:
    mods = {}
    for p in pkg.rglob("*.py"):
        parts = (pkg.name,) + p.relative_to(pkg).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _is_extension(module: str, pkg: Path = PKG) -> bool:
    """A compiled module (Cython source beside the package): private by name, imported by its
    loader only."""
    rel = Path(*module.split(".")[1:])
    return (pkg / rel).with_suffix(".pyx").exists() or any((pkg / rel.parent).glob(rel.name + ".*.so"))


def _imports(pkg: Path = PKG):
    """(modules, edges between them, private names imported across modules)."""
    mods = _modules(pkg)
    edges: dict[str, set[str]] = defaultdict(set)
    private = set()
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith(pkg.name):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods or _is_extension(sub, pkg):
                        if sub in mods:
                            edges[mod].add(sub)
                        continue
                    if target in mods:
                        edges[mod].add(target)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.add((mod, target, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        edges[mod].add(alias.name)
    return mods, edges, private


def _cycles(nodes, edges) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def test_no_new_import_cycles():
    mods, edges, _ = _imports()
    cycles = _cycles(sorted(mods), edges)
    in_cycles = set().union(*cycles) if cycles else set()
    new = in_cycles - KNOWN_CYCLE
    assert not new, f"new import cycle through {sorted(new)}: {[sorted(c) for c in cycles]}"
    assert len(cycles) <= 1, f"several import cycles: {[sorted(c) for c in cycles]}"
    fixed = KNOWN_CYCLE - in_cycles
    assert not fixed, f"no longer in a cycle, drop them from KNOWN_CYCLE: {sorted(fixed)}"


def test_no_new_private_imports():
    _, _, private = _imports()
    new = private - KNOWN_PRIVATE
    assert not new, "imports of another module's private names: " + ", ".join(
        f"{m} imports {n} from {t}" for m, t, n in sorted(new))
    fixed = KNOWN_PRIVATE - private
    assert not fixed, f"fixed, drop them from KNOWN_PRIVATE: {sorted(fixed)}"


def test_the_scanner_sees_cycles_and_private_names(tmp_path):
    """The scanner itself, on a small package: a lazy two-module cycle is one component, an
    import of a private name is found, a compiled module's private name is not reported."""
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n    from .sub.c import _hidden\n")
    (pkg / "sub" / "__init__.py").write_text("from . import _ext\n")
    (pkg / "sub" / "c.py").write_text("_hidden = 1\n")
    (pkg / "sub" / "_ext.pyx").write_text("")
    mods, edges, private = _imports(pkg)
    assert _cycles(sorted(mods), edges) == [{"toy.a", "toy.b"}]
    assert private == {("toy.b", "toy.sub.c", "_hidden")}
