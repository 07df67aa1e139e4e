"""BUILD (Bazel) must name every library, binary and test file, and nothing that is gone.

Fix any failure here with:  python scripts/sync_build.py
"""
# bazel: suite=repo

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

# Under `bazel test` this file is a symlink into the source tree; resolving it
# checks the real tree (the runfiles tree only holds what BUILD already names).
ROOT = Path(os.path.realpath(__file__)).parent.parent
FIX = "BUILD is out of sync with the source tree: run python scripts/sync_build.py"

# Quoted strings in BUILD that are plain file paths (no labels, no glob patterns).
_QUOTED_PATH = re.compile(r'"([A-Za-z0-9_][A-Za-z0-9_./-]*\.[A-Za-z0-9]+)"')


def _sync_build():
    spec = importlib.util.spec_from_file_location(
        "_sync_build_under_test", ROOT / "scripts" / "sync_build.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _build_text() -> str:
    build = ROOT / "BUILD"
    assert build.is_file(), f"{build} is missing. {FIX}"
    return build.read_text(encoding="utf-8")


def _named_paths(text: str) -> set[str]:
    # Ignore comments: they may quote example paths.
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(_QUOTED_PATH.findall(code))


def test_every_source_binary_and_test_file_is_in_build():
    tree = _sync_build().scan(ROOT)
    assert tree.tests, "no test files found: is the repository layout what sync_build.py expects?"
    missing = sorted(set(tree.all_files()) - _named_paths(_build_text()))
    assert not missing, f"{FIX}\nnot in BUILD: {missing}"


def test_every_test_file_has_a_test_target():
    sync = _sync_build()
    text = _build_text()
    missing = [
        path
        for path in sync.scan(ROOT).tests
        if not re.search(r'py_pytest_test\([^)]*"' + re.escape(path) + '"', text)
    ]
    assert not missing, f"{FIX}\nno py_pytest_test for: {missing}"


def test_build_names_no_missing_file():
    stale = sorted(p for p in _named_paths(_build_text()) if not (ROOT / p).exists())
    assert not stale, f"{FIX}\nBUILD names files that do not exist: {stale}"


def test_build_matches_generator():
    expected = _sync_build().render(ROOT)
    assert _build_text() == expected, f"{FIX}\n(see: python scripts/sync_build.py --check)"



# `pytestmark = pytest.mark.slow` at the top level of a test file, not indented.
_SLOW_FILE = re.compile(r"^pytestmark\s*=\s*(?:\[[^\]]*)?pytest\.mark\.slow\b", re.M)


def test_slow_files_carry_the_bazel_tag():
    """A file whose tests are all slow (module-level `pytestmark = pytest.mark.slow`) has the
    Bazel tag `slow`, and only such a file: CI runs `pytest -m slow` and, under Bazel, the
    other tests (`--test_tag_filters=-slow` plus pytest's `-m "not slow"` for files that mark
    single tests slow), so every test runs exactly once."""
    sync = _sync_build()
    disagree = []
    for path in sync.scan(ROOT).tests:
        slow_file = bool(_SLOW_FILE.search((ROOT / path).read_text(encoding="utf-8")))
        tagged = "slow" in sync.read_directives(ROOT / path).get("tags", "").split(",")
        if slow_file != tagged:
            disagree.append(path)
    assert not disagree, ("`pytestmark = pytest.mark.slow` and `# bazel: ... tags=slow` go "
                          f"together (then run python scripts/sync_build.py): {disagree}")


def _tree_with(tmp_path, files: dict[str, str]) -> Path:
    (tmp_path / "tests").mkdir()
    for name, text in files.items():
        (tmp_path / "tests" / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_a_suite_is_one_target_with_its_largest_size_and_all_tags(tmp_path):
    sync = _sync_build()
    root = _tree_with(tmp_path, {
        "test_a.py": '"""A."""\n# bazel: suite=demo\n',
        "test_b.py": '"""B."""\n# bazel: size=large tags=subprocess suite=demo\n',
        "test_c.py": '"""C."""\n',
    })
    targets = sync.test_targets(root, sync.scan(root))
    assert [(name, paths) for name, paths, _ in targets] == [
        ("demo_tests", ["tests/test_a.py", "tests/test_b.py"]), ("test_c", ["tests/test_c.py"])]
    assert targets[0][2] == {"size": "large", "tags": "subprocess"}
    assert 'srcs = [\n        "tests/test_a.py",\n        "tests/test_b.py",\n    ],' in (
        sync.render(root))


def test_a_suite_may_not_mix_slow_and_fast_files(tmp_path):
    sync = _sync_build()
    root = _tree_with(tmp_path, {"test_a.py": "# bazel: suite=demo\n",
                                 "test_b.py": "# bazel: tags=slow suite=demo\n"})
    with pytest.raises(ValueError, match=r"tests/test_b\.py: .*'slow'"):
        sync.test_targets(root, sync.scan(root))
