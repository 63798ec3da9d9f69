"""The import graph of ppcls: no cycles, and inside the two parts whose modules once imported each other
in a circle (arch: the weights loader, the converters and the spec tables; inference: the backend rule,
the predictor, ONNX and the probe) each module imports only the ones below it.

The rule, lazy imports included: every ``import`` of a ppcls module counts, at module level or inside a
function. A function-level import is for deferring a cost (onnxruntime, paddle2onnx, torch, training code
that a deploy never loads), never for hiding a cycle, so the graph with them must be acyclic too.
``from package import name`` is an edge to ``package.name`` when that is a module, else to ``package``
(its ``__init__``). The implicit import of a module's parent packages is not an edge: every submodule
would otherwise depend on its package's ``__init__``, which imports the submodules in turn.

The parts of the package (utils < arch / data / loss / metric / optimizer < inference ... < cli) are
checked by tests/test_front_door.py::test_imports_point_down; these tests add the cycles and the order
inside a part."""
import ast
import os
import subprocess
import sys

import pytest

from engine_utils import ROOT

PKG = os.path.join(ROOT, "ppcls")

# sub-layers inside a part: a module imports modules of lower sub-layers, and of its own sub-layer only
# those of the same entry (backbone.rexunet -> backbone.rexnet; registry and weight_table are independent);
# a module missing from the table is above all of them (it may import any module of its part, and no
# module of the table may import it)
ARCH_ORDER = {
    "ppcls.arch.registry": 0, "ppcls.arch.weight_table": 0,  # data: the model registry, the weights table
    "ppcls.arch.backbone": 1,                                # the families: spec tables, model cards, weights rows
    "ppcls.arch.convert": 2,                                 # converters: read the spec tables
    "ppcls.arch.weights": 3,                                 # the loader: tags, downloads, conversion
    "ppcls.arch": 4,                                         # build_model: builds, then loads weights
    "ppcls.arch.info": 5,                                    # model_info: builds models, lists their weights
}
INFERENCE_ORDER = {
    "ppcls.inference.labels": 0, "ppcls.inference.pipeline": 0,
    "ppcls.inference.backend": 0,    # which backend: reads backend.json, runs nothing
    "ppcls.inference.preprocess_spec": 0,    # the recorded preprocessing as plain numbers
    "ppcls.inference.onnx_metadata": 1, "ppcls.inference.paddleclas_deploy": 1,  # write them for other runtimes
    "ppcls.inference.predictor": 1,  # asks backend which one to run
    "ppcls.inference.onnx": 2,       # converts, and checks the conversion with two predictors
    "ppcls.inference.probe": 3,      # times both predictors on a converted model, writes backend.json
}
SUBLAYERS = {"arch": ARCH_ORDER, "inference": INFERENCE_ORDER}


def package_modules():
    """{module name: path} of every module of ppcls."""
    mods = {}
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def imports_of(module, path, modules):
    """[(target module, line, lazy)] for every ppcls import in ``path``; lazy: inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, inner) for a in child.names if a.name.split(".")[0] == "ppcls")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1] + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                if base.split(".")[0] == "ppcls":
                    for a in child.names:
                        sub = f"{base}.{a.name}"
                        found.append((sub if sub in modules else base, child.lineno, inner))
            visit(child, inner)
    visit(tree, False)
    return found


def import_graph():
    """{module: [(target, line, lazy)]} restricted to targets inside ppcls, no self-edges."""
    modules = package_modules()
    return {m: [(t, line, lazy) for t, line, lazy in imports_of(m, p, modules) if t in modules and t != m]
            for m, p in modules.items()}, modules


def find_cycles(graph, with_lazy):
    """The strongly connected components with more than one module (each holds at least one cycle),
    each reported as one cycle through it, with the file and line of every edge."""
    adj = {m: {} for m in graph}
    for m, edges in graph.items():
        for t, line, lazy in edges:
            if with_lazy or not lazy:
                adj[m].setdefault(t, (line, lazy))
    index, low, stack, on_stack, comps = {}, {}, [], set(), []

    def strongconnect(v):  # Tarjan; recursion depth is bounded by the module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adj[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)
    for v in sorted(adj):
        if v not in index:
            strongconnect(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        # breadth-first from start back to start inside the component: the shortest cycle through it
        prev, frontier, seen = {}, [start], {start}
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for w in sorted(adj[v]):
                    if w in comp and (w == start or w not in seen):
                        if w not in prev:
                            prev[w] = v
                        if w != start:
                            seen.add(w)
                            nxt.append(w)
            frontier = nxt
        path, v = [start], prev[start]
        while v != start:
            path.append(v)
            v = prev[v]
        path.append(start)
        path.reverse()
        steps = [f"{a} -> {b} (line {adj[a][b][0]}{', lazy' if adj[a][b][1] else ''})" for a, b in zip(path, path[1:])]
        cycles.append(f"{len(comp)} modules in a cycle: " + "; ".join(steps))
    return cycles


def test_no_import_cycle_at_module_level():
    graph, _ = import_graph()
    cycles = find_cycles(graph, with_lazy=False)
    assert not cycles, "\n".join(cycles)


def test_no_import_cycle_even_through_lazy_imports():
    graph, _ = import_graph()
    cycles = find_cycles(graph, with_lazy=True)
    assert not cycles, "\n".join(cycles)


def test_the_cycle_finder_finds_cycles():
    """The finder itself, on graphs with a known answer: a lazy back edge is a cycle only when counted."""
    graph = {"a": [("b", 1, False)], "b": [("c", 2, False)], "c": [("a", 3, True)], "d": [("a", 4, False)]}
    assert find_cycles(graph, with_lazy=False) == []
    (cycle,) = find_cycles(graph, with_lazy=True)
    assert cycle == "3 modules in a cycle: a -> b (line 1); b -> c (line 2); c -> a (line 3, lazy)"  # d only leads in
    graph["a"].append(("d", 5, False))  # now a -> d -> a at module level as well
    (cycle,) = find_cycles(graph, with_lazy=False)
    assert cycle == "2 modules in a cycle: a -> d (line 5); d -> a (line 4)"
    assert len(find_cycles(graph, with_lazy=True)) == 1  # one component: a, b, c, d
    assert find_cycles({"x": [("y", 1, False)], "y": [("x", 2, False)]}, with_lazy=False) == [
        "2 modules in a cycle: x -> y (line 1); y -> x (line 2)"]


def _sublayer(module, order):
    """The sub-layer of ``module`` in ``order``: its own entry or its package's (backbone.dla -> backbone)."""
    probe = module
    while probe:
        if probe in order:
            return probe, order[probe]
        probe = probe.rpartition(".")[0]
    return None, max(order.values()) + 1


@pytest.mark.parametrize("part", sorted(SUBLAYERS))
def test_modules_inside_a_part_import_only_lower_sublayers(part):
    order = SUBLAYERS[part]
    graph, modules = import_graph()
    assert all(m in modules for m in order), sorted(set(order) - set(modules))
    prefix = f"ppcls.{part}"
    upward = []
    for module, edges in graph.items():
        if module != prefix and not module.startswith(prefix + "."):
            continue
        own_group, own = _sublayer(module, order)
        for target, line, lazy in edges:
            if target != prefix and not target.startswith(prefix + "."):
                continue
            group, level = _sublayer(target, order)
            if level > own or (level == own and own_group is not None and group != own_group):
                upward.append(f"{modules[module]}:{line}: {module} (sub-layer {own}) imports {target} "
                              f"(sub-layer {level}){' lazily' if lazy else ''}")
    assert not upward, "\n".join(upward)


def test_the_two_named_cycles_are_gone():
    """The circles of issue 25: weights -> convert -> the spec tables -> weights, and backend <-> onnx <->
    predictor. The spec tables now read the weights table (data), not the loader; the backend rule is
    below the predictor and the probe above it."""
    graph, _ = import_graph()
    targets = {m: {t for t, _, _ in edges} for m, edges in graph.items()}
    for family in ("dla", "rexnet", "rlanet"):
        assert "ppcls.arch.weights" not in targets[f"ppcls.arch.backbone.{family}"]
        assert "ppcls.arch.weight_table" in targets[f"ppcls.arch.backbone.{family}"]
    assert "ppcls.arch" not in targets["ppcls.arch.weights"] and "ppcls.arch.convert" in targets["ppcls.arch.weights"]
    assert "ppcls.arch" not in targets["ppcls.arch.convert.core"]
    assert not targets["ppcls.inference.backend"] & {"ppcls.inference.predictor", "ppcls.inference.onnx"}
    assert "ppcls.inference.onnx" not in targets["ppcls.inference.predictor"]
    assert {"ppcls.inference.predictor", "ppcls.inference.onnx"} <= targets["ppcls.inference.probe"]


@pytest.mark.parametrize("module", ["ppcls.arch.weight_table", "ppcls.arch.convert.dla", "ppcls.arch.weights",
                                    "ppcls.arch.info", "ppcls.inference.backend", "ppcls.inference.onnx",
                                    "ppcls.inference.probe"])
def test_each_reworked_module_imports_first_in_a_fresh_interpreter(module):
    """Imported first, each module finds what it needs already defined (an import order that only works
    when some other module was imported before it is the symptom of a hidden cycle)."""
    code = (f"import importlib, sys; m = importlib.import_module({module!r}); "
            "print('IMPORTED', m.__name__, 'ppcls.engine' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"IMPORTED {module} False" in r.stdout  # and no training code came with it
