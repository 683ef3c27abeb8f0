"""The folders show the layers (docs/architecture.md, "The layers"): every import of the sources, those inside
functions too, goes down the layer table or stays in its layer; no import loops; an import inside a function
says why it waits."""
import ast
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("data_tools", "ernie_style", "export")
DOC = os.path.join(REPO, "docs", "architecture.md")
# Importable from any layer: they hold module paths as strings and import no implementation.
REGISTRIES = {"ernie_style/arch/__init__.py", "ernie_style/tasks/__init__.py", "ernie_style/training/__init__.py"}
# The trainer runs the Task it is handed: of tasks/ it imports the protocol only.
PROTOCOL = ("ernie_style/training/", "ernie_style/tasks/base.py")


def layer_table() -> list:
    """The layer paths of docs/architecture.md's table, lowest first."""
    text = open(DOC, encoding="utf-8").read().split("## The layers", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([\w/.]+)` \|", text, re.M)]


def layer_of(path: str, layers: list) -> int:
    best = max((p for p in layers if path == p or (p.endswith("/") and path.startswith(p))), key=len)
    return layers.index(best)


def _module_file(name: str):
    base = os.path.join(REPO, *name.split("."))
    for cand in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(cand):
            return os.path.relpath(cand, REPO)
    return None


def source_files() -> list:
    out = []
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, pkg)):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "sample_data")]
            out += [os.path.relpath(os.path.join(dirpath, f), REPO) for f in filenames if f.endswith(".py")]
    return sorted(out)


def imports_of(path: str):
    """(line, target file, inside a function, has a comment) for each import of a project module in ``path``."""
    src = open(os.path.join(REPO, path), encoding="utf-8").read()
    lines = src.splitlines()
    tree = ast.parse(src)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node)}
    package = path[:-3].replace("/", ".").split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod when there is one
            names = [f"{base}.{a.name}" if _module_file(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        lineno = node.lineno
        first = lineno  # a comment above a run of import lines covers the run
        while first > 1 and lines[first - 2].strip().startswith(("from ", "import ")):
            first -= 1
        commented = "#" in lines[lineno - 1] or (first > 1 and lines[first - 2].strip().startswith("#"))
        for name in names:
            if name.split(".")[0] in PACKAGES:
                target = _module_file(name)
                assert target is not None, f"{path}:{lineno}: import of {name}, which is not a module here"
                yield lineno, target, id(node) in in_function, commented


def test_the_table_covers_every_source_file():
    layers = layer_table()
    assert layers[0] == "data_tools/" and layers[-1] == "export/" and len(layers) >= 10, layers
    for p in layers:
        assert os.path.exists(os.path.join(REPO, p)), f"the layer table names {p}, which does not exist"
    for path in source_files():
        layer_of(path, layers)  # raises when no row holds the file


def test_top_level_of_ernie_style_holds_the_entry_points_and_little_else():
    names = [n for n in os.listdir(os.path.join(REPO, "ernie_style")) if n.endswith(".py") and n != "__init__.py"]
    assert len(names) <= 11, sorted(names)


def test_no_import_goes_up_the_layers():
    layers = layer_table()
    wrong = []
    for path in source_files():
        mine = layer_of(path, layers)
        for lineno, target, _, _ in imports_of(path):
            if target in REGISTRIES or (path.startswith(PROTOCOL[0]) and target == PROTOCOL[1]):
                continue
            if layer_of(target, layers) > mine:
                wrong.append(f"{path}:{lineno} imports {target} ({layers[layer_of(target, layers)]} is above "
                             f"{layers[mine]})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_loops():
    graph = {}
    for path in source_files():
        graph.setdefault(path, set())
        for _, target, _, _ in imports_of(path):
            if target != path and not target.endswith("__init__.py"):
                graph[path].add(target)
    # Tarjan's strongly connected components: a component of more than one module is a loop.
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


def test_every_import_inside_a_function_says_why_it_waits():
    bare = sorted({f"{path}:{lineno}" for path in source_files() for lineno, _, inside, commented in imports_of(path)
            if inside and not commented})
    assert not bare, "imports of project modules inside functions without a reason comment:\n" + "\n".join(bare)
