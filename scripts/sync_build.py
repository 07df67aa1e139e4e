#!/usr/bin/env python3
"""Regenerate the Bazel BUILD file at the repository root from the source tree.

    python scripts/sync_build.py          # rewrite BUILD
    python scripts/sync_build.py --check  # exit 1 (and show a diff) if BUILD is stale

What goes into BUILD (paths are listed explicitly, sorted, so the output is
deterministic and tests/test_build_sync.py can check it):

  * py_library `autonl_tf`: every .py file under autonl_tf/ and configs/, plus their
    non-Python files (autonl_tf/models/arch/*.txt, ...) as data;
  * py_binary per `*_main.py` file at the repository root (search_main, train_main, eval_main);
  * py_library `test_support` (testonly): the non-test .py files under tests/
    (conftest.py, helpers), with README.md, pyproject.toml, the *_main.py files, and the
    non-Python files of tests/, benchmarks/, scripts/ and docs/ (and CHANGELOG.md) as data;
  * py_pytest_test per pytest file under tests/ (`test_*.py` or `*_test.py`), or per
    suite: the files that name the same suite form one target `<suite>_tests` (one pytest
    process: TensorFlow starts and the shared fixtures are built once for all of them).

A test file may tune its target with a directive comment on a line of its own,
for example

    # bazel: size=large timeout=eternal tags=slow,subprocess
    # bazel: suite=export

Keys: size (small|medium|large|enormous, default medium), timeout
(short|moderate|long|eternal, default long), tags (comma separated),
shard_count (integer; the test must then support Bazel sharding), suite (a name; a
suite's target takes the largest size and timeout of its files and the union of their
tags, and its files must agree on the tag `slow`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_FILE = "BUILD"

LIBRARY_DIRS = ("autonl_tf", "configs")
TESTS_DIR = "tests"
# Directories whose non-Python files tests may read (as Bazel data).
TEST_DATA_DIRS = ("tests", "benchmarks", "scripts", "docs")
BINARY_SUFFIX = "_main.py"
SYNC_TEST = "tests/test_build_sync.py"

_SKIP_DIRS = {"__pycache__"}
_SIZES = ("small", "medium", "large", "enormous")
_TIMEOUTS = ("short", "moderate", "long", "eternal")
_DIRECTIVE = re.compile(r"^#\s*bazel:\s*(.*?)\s*$")
_TAG = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class Tree:
    """The files of the repository that BUILD must name (POSIX paths relative to the root)."""

    library: tuple[str, ...]
    binaries: tuple[str, ...]
    tests: tuple[str, ...]
    test_support: tuple[str, ...]

    def all_files(self) -> tuple[str, ...]:
        return self.library + self.binaries + self.tests + self.test_support


def is_test_file(name: str) -> bool:
    """pytest's default `python_files` patterns: test_*.py and *_test.py."""
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _py_files(root: Path, top: str) -> list[str]:
    found = []
    base = root / top
    if not base.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(base):
        # Prune caches and hidden directories (.ipynb_checkpoints, ...).
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.endswith(".py") and not name.startswith("."):
                found.append((rel_dir / name).as_posix())
    return found


def scan(root: Path = ROOT) -> Tree:
    """Lists the Python files of the library, the binaries and the tests."""
    root = Path(root)
    library = sorted(p for top in LIBRARY_DIRS for p in _py_files(root, top))
    binaries = sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith(BINARY_SUFFIX))
    tests, support = [], []
    for path in _py_files(root, TESTS_DIR):
        (tests if is_test_file(path.rsplit("/", 1)[-1]) else support).append(path)
    if (root / "conftest.py").is_file():
        support.append("conftest.py")
    return Tree(tuple(library), tuple(binaries), tuple(sorted(tests)), tuple(sorted(support)))


def test_target_name(path: str) -> str:
    """tests/test_foo.py -> test_foo; tests/unit/test_bar.py -> unit/test_bar."""
    return path[len(TESTS_DIR) + 1 : -len(".py")]


def read_directives(path: Path) -> dict[str, str]:
    """Parses `# bazel: key=value ...` lines of a test file."""
    options: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            match = _DIRECTIVE.match(line.strip())
            if not match:
                continue
            for item in match.group(1).split():
                key, sep, value = item.partition("=")
                where = f"{path}:{lineno}"
                if not sep or not value:
                    raise ValueError(f"{where}: expected key=value, got {item!r}")
                if key == "size" and value not in _SIZES:
                    raise ValueError(f"{where}: size must be one of {_SIZES}")
                if key == "timeout" and value not in _TIMEOUTS:
                    raise ValueError(f"{where}: timeout must be one of {_TIMEOUTS}")
                if key == "shard_count" and not value.isdigit():
                    raise ValueError(f"{where}: shard_count must be an integer")
                if key == "tags" and not all(_TAG.match(t) for t in value.split(",")):
                    raise ValueError(f"{where}: bad tags {value!r}")
                if key == "suite" and not re.fullmatch(r"[a-z][a-z0-9_]*", value):
                    raise ValueError(f"{where}: suite must be a lower-case name, got {value!r}")
                if key not in ("size", "timeout", "tags", "shard_count", "suite"):
                    raise ValueError(f"{where}: unknown bazel directive key {key!r}")
                options[key] = value
    return options


def _merge(path: str, merged: dict[str, str], opts: dict[str, str]) -> None:
    """Folds one file's directives into its suite's: largest size and timeout, all tags."""
    for key, order in (("size", _SIZES), ("timeout", _TIMEOUTS)):
        if key in opts and (key not in merged or order.index(opts[key]) > order.index(merged[key])):
            merged[key] = opts[key]
    tags = set(merged.get("tags", "").split(",")) | set(opts.get("tags", "").split(","))
    if ("slow" in merged.get("tags", "").split(",")) != ("slow" in opts.get("tags", "").split(",")):
        raise ValueError(f"{path}: the files of suite {opts['suite']!r} must all have the tag "
                         "'slow' or all lack it (CI runs the slow tier apart)")
    if "shard_count" in opts:
        raise ValueError(f"{path}: shard_count is per file; a suite cannot shard")
    if tags - {""}:
        merged["tags"] = ",".join(sorted(tags - {""}))


def test_targets(root: Path, tree: Tree) -> list[tuple[str, list[str], dict[str, str]]]:
    """(target name, test files, directives) of every py_pytest_test, sorted by name."""
    targets: dict[str, tuple[list[str], dict[str, str]]] = {}
    for path in tree.tests:
        opts = read_directives(root / path)
        if "suite" not in opts:
            targets[test_target_name(path)] = ([path], opts)
            continue
        name = opts["suite"] + "_tests"
        paths, merged = targets.setdefault(name, ([], {}))
        if not paths:
            merged.update({k: v for k, v in opts.items() if k != "suite"})
        else:
            _merge(path, merged, opts)
        paths.append(path)
    return [(name, *targets[name]) for name in sorted(targets)]


def _q(s: str) -> str:
    return '"' + s + '"'


def _list(items, indent: int = 4) -> str:
    """A Starlark list in buildifier style."""
    items = list(items)
    if not items:
        return "[]"
    if len(items) == 1:
        return "[" + _q(items[0]) + "]"
    pad = " " * (indent + 4)
    return "[\n" + "".join(f"{pad}{_q(i)},\n" for i in items) + " " * indent + "]"


def _glob(includes, excludes=()) -> str:
    return (
        "glob(\n"
        f"        {_list(includes, 8)},\n"
        f"        exclude = {_list(excludes, 8)},\n"
        "        allow_empty = True,\n"
        "    )"
    )


HEADER = """\
# Bazel targets of autonl_tf. GENERATED by scripts/sync_build.py -- do not edit by
# hand: after adding, moving or removing a library/test/binary file run
#
#     python scripts/sync_build.py
#
# (tests/test_build_sync.py fails while this file is out of sync with the tree).
# Per-test size/timeout/tags: a `# bazel: size=large tags=slow` line in the test file.
#
# Usage, with network access (Bazel fetches rules_cc, rules_java and its coverage
# tools itself; .bazelversion pins Bazel 4.2.3 for bazelisk):
#
#     bazel test //...                  # Python = `python3` on PATH (activate .venv first)
#     bazel test --config=venv //...    # Python = <repo>/.venv/bin/python3, whatever PATH says
#     bazel run //:train_main -- --help
#
# Debian's bazel-bootstrap: its /usr/bin/bazel launcher wants a binary named after
# .bazelversion, so use `USE_BAZEL_VERSION=4 bazel ...` (or call /usr/bin/bazel-4).
#
# Third-party packages (tensorflow, keras, numpy, pytest, ...) are not Bazel
# targets: they come from that interpreter's site-packages (scripts/setup.sh).
# Offline CI runs .ci/bazel_test.sh, which swaps in the local stand-in
# repositories under .ci/bazel/ -- nothing here depends on them.
#
# Each test target runs pytest on its file (or on its suite's files, in one process)
# via tools/bazel/pytest_main.py, in the runfiles tree (a copy of this tree holding
# only the declared files), with HOME and TMPDIR inside the test's private
# TEST_TMPDIR. Tests therefore locate repo files from Path(__file__).absolute() (not
# .resolve(), which leaves the runfiles tree), start child processes with
# sys.executable, and write only under tmp_path.
"""


def render(root: Path = ROOT) -> str:
    """The BUILD file for the tree at `root`."""
    root = Path(root)
    tree = scan(root)
    non_py = ["**/*.py", "**/*.pyc", "**/__pycache__/**"]
    out = [HEADER]
    out.append('load("//tools/bazel:pytest.bzl", "py_pytest_test")\n')
    out.append('package(default_visibility = ["//visibility:public"])\n')
    out.append(
        "# The library: autonl_tf/ and configs/ (configs are loaded by path, and the\n"
        "# architecture files of autonl_tf/models/arch/ are read at run time, so the\n"
        "# non-Python files come along as data).\n"
        "py_library(\n"
        '    name = "autonl_tf",\n'
        f"    srcs = {_list(tree.library)},\n"
        f"    data = {_glob([f'{d}/**' for d in LIBRARY_DIRS], non_py)},\n"
        '    srcs_version = "PY3",\n'
        ")\n"
    )
    for path in tree.binaries:
        out.append(
            "py_binary(\n"
            f"    name = {_q(path[: -len('.py')])},\n"
            f"    srcs = [{_q(path)}],\n"
            "    legacy_create_init = False,\n"
            '    python_version = "PY3",\n'
            '    srcs_version = "PY3",\n'
            '    deps = [":autonl_tf"],\n'
            ")\n"
        )
    data = ([p for p in ("README.md", "CHANGELOG.md", "pyproject.toml") if (root / p).is_file()]
            + list(tree.binaries))
    out.append(
        "# What every test may use besides the library: conftest.py and helper modules,\n"
        "# README.md (tests/test_readme.py runs its commands; its links: CHANGELOG.md, docs/),\n"
        "# pyproject.toml (pytest's rootdir and ini options), the *_main.py binaries\n"
        "# (tests start them as subprocesses) and the data files of tests/,\n"
        "# benchmarks/, scripts/ and docs/.\n"
        "py_library(\n"
        '    name = "test_support",\n'
        "    testonly = True,\n"
        f"    srcs = {_list(tree.test_support)},\n"
        f"    data = {_list(data)} + "
        + _glob(
            [f"{d}/**" for d in TEST_DATA_DIRS],
            [f"{TESTS_DIR}/**/*.py", "**/*.pyc", "**/__pycache__/**"],
        )
        + ",\n"
        '    srcs_version = "PY3",\n'
        '    deps = [":autonl_tf"],\n'
        ")\n"
    )
    for name, paths, opts in test_targets(root, tree):
        lines = [f"    name = {_q(name)},", f"    srcs = {_list(paths)},"]
        if "size" in opts:
            lines.append(f"    size = {_q(opts['size'])},")
        if "timeout" in opts:
            lines.append(f"    timeout = {_q(opts['timeout'])},")
        if "shard_count" in opts:
            lines.append(f"    shard_count = {int(opts['shard_count'])},")
        tags = set(opts["tags"].split(",")) if "tags" in opts else set()
        if SYNC_TEST in paths:
            # It checks the source tree itself, which Bazel does not track as inputs
            # of the test: "external" means never cache its result.
            tags.add("external")
        if tags:
            lines.append(f"    tags = {_list(sorted(tags))},")
        out.append("py_pytest_test(\n" + "\n".join(lines) + "\n)\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether BUILD is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    build = args.root / BUILD_FILE
    try:
        text = render(args.root)
    except ValueError as e:  # a malformed `# bazel:` directive
        print(f"sync_build.py: {e}", file=sys.stderr)
        return 2
    current = build.read_text(encoding="utf-8") if build.exists() else ""
    if args.check:
        if current == text:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), "BUILD", "BUILD (generated)"
            )
        )
        print("BUILD is out of date: run python scripts/sync_build.py", file=sys.stderr)
        return 1
    if current != text:
        build.write_text(text, encoding="utf-8")
        print(f"wrote {build}")
    else:
        print(f"{build} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
