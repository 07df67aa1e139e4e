"""The package's layering, checked from the source: no module imports a layer above its own.

    foundation (errors, files, arch, plan, cost, data)  ->  layers  ->  models
      ->  runner (the run machinery: config, cli, strategy, driver, checkpoints, evaluation,
          experiment)
      ->  recipe (the classifier recipe and its task)
      ->  search, export
      ->  commands (the programs search_main, train_main, eval_main; pipeline, profile, latency:
          it measures the search space's parts with the export's converter)

Imports inside functions count too (they are still dependencies), and no two packages may
import each other, directly or through others. Nothing in the package imports the tests, and
nothing but the config loader looks for files outside the package.
"""
# bazel: suite=repo

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).absolute().parent.parent / "autonl_tf"

# Top-level module or subpackage of autonl_tf -> its layer (higher may import lower or equal).
LAYERS = {
    "_startup": 0, "_lazy": 0, "errors": 0, "files": 0, "arch": 0, "plan": 0, "cost": 0, "data": 0,
    "layers": 1,
    "models": 2,
    "runner": 3,
    "recipe": 4,
    "search": 5, "export": 5,
    "search_main": 6, "train_main": 6, "eval_main": 6,
    "pipeline": 6, "profile": 6, "latency": 6, "__init__": 6,
}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "autonl_tf" and len(parts) > 1 else None


def _imports(path: pathlib.Path, root: pathlib.Path) -> set[str]:
    """Every autonl_tf module ``path`` imports (absolute or relative, at any depth)."""
    package = ["autonl_tf", *path.relative_to(root).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("autonl_tf")}


def _edges(root: pathlib.Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the files where it happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        source = relative.parts[0].removesuffix(".py")
        for module in _imports(path, root):
            target = _unit(module)
            if target and target != source and target in LAYERS:
                edges.setdefault((source, target), []).append(str(relative))
    return edges


def test_every_unit_has_a_layer():
    units = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert units - {"__main__"} <= set(LAYERS), f"give these a layer: {units - set(LAYERS)}"


def _upward(edges) -> list[str]:
    return [f"{source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[target]}) "
            f"in {', '.join(sorted(set(where)))}"
            for (source, target), where in edges.items() if LAYERS[target] > LAYERS[source]]


def test_no_module_imports_a_layer_above_its_own():
    upward = _upward(_edges())
    assert not upward, "\n".join(upward)


def test_no_two_packages_depend_on_each_other():
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a, {b})})
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    """What this package once had: data -> training and training -> export, hidden in
    functions (training: the runner and the recipe's package then)."""
    root = tmp_path / "autonl_tf"
    for source, target in (("data", "runner"), ("runner", "export")):
        (root / source).mkdir(parents=True)
        (root / source / "__init__.py").write_text("")
        (root / source / "x.py").write_text(
            f"def f():\n    from autonl_tf.{target} import something\n")
    upward = _upward(_edges(root))
    assert len(upward) == 2 and "data (layer 0) imports runner (layer 3)" in upward[0]


def test_the_runner_knows_no_model_and_nothing_imports_the_tests():
    """The runner is the machinery any task runs on: it imports no recipe, search or export
    (nor models: a task brings its own); the installed package never imports ``tests``."""
    runner_imports = {target for (source, target) in _edges() if source == "runner"}
    assert not runner_imports & {"models", "recipe", "search", "export", "layers"}, runner_imports
    for path in sorted(PACKAGE.rglob("*.py")):
        test_imports = [m for m in _all_imports(path) if m.split(".")[0] in ("tests", "benchmarks")]
        assert not test_imports, f"{path.relative_to(PACKAGE)} imports {test_imports}"


def _all_imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


# The modules that locate files from ``__file__``: package data inside autonl_tf, and the config
# loader, the one place that finds the repository's configs/ folder (what users edit and pass).
_FILE_USERS = {"models/registry.py": "the architecture files in models/arch/",
               "latency/committed.py": "the committed latency tables in latency/tables/",
               "runner/config.py": "configs/ next to the package (a source checkout)"}


def test_nothing_but_the_config_loader_looks_outside_the_package():
    """The installed package depends on no file outside it: no module finds the repository root
    from ``__file__`` (the pipeline and the tests start ``python -m autonl_tf.<program>``)."""
    users = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        relative = str(path.relative_to(PACKAGE))
        assert "REPO_ROOT" not in text, f"{relative} names REPO_ROOT"
        if "__file__" in text:
            users[relative] = text
    assert set(users) == set(_FILE_USERS), sorted(users)
    for relative, text in users.items():
        outside = "parents[" in text or "os.path.dirname(os.path.dirname" in text
        assert outside == (relative == "runner/config.py"), relative
