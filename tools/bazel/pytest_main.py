"""Shared `main` of every Bazel py_test in this repository: runs pytest files.

Bazel runs a py_test as a plain Python program, but the tests of this project are
pytest-style (plain functions/classes, fixtures from tests/conftest.py). Every
`py_pytest_test` target (tools/bazel/pytest.bzl) therefore uses this file as its
main and passes its test files (one, or a suite's) first:

    pytest_main.py tests/test_foo.py [tests/test_bar.py ...] [extra pytest args...]

Extra arguments come from `bazel test --test_arg=...`, e.g. `--test_arg=-k --test_arg=name`.

The working directory is the workspace root inside the runfiles tree, which holds
the library, configs/, the *_main.py binaries, tests/conftest.py and pyproject.toml
(so pytest picks the same rootdir and ini options as a plain `pytest` run).
"""

import os
import sys
import tempfile


def _prepare_environment() -> None:
    test_tmpdir = os.environ.get("TEST_TMPDIR")
    if test_tmpdir:
        # Bazel's sandbox only guarantees writes below TEST_TMPDIR. Point HOME
        # (caches under ~/.cache, ~/.keras, matplotlib's config dir, ...) and
        # TMPDIR (tempfile, pytest's tmp_path, child processes) there.
        if not os.path.isabs(os.environ.get("HOME", "")):
            os.environ["HOME"] = test_tmpdir
        os.environ["TMPDIR"] = test_tmpdir
        tempfile.tempdir = None  # forget any value computed before TMPDIR was set
    # Byte-code caches would be written next to the runfiles symlinks; skip them.
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.dont_write_bytecode = True
    # Python put the *resolved* directory of this script (tools/bazel in the
    # source tree) first on sys.path; only runfiles entries should be there.
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]


def main(argv: list[str]) -> int:
    files = []
    for arg in argv[1:]:
        if arg.startswith("-") or not arg.endswith(".py"):
            break
        files.append(arg)
    if not files:
        print(f"usage: {argv[0]} TEST_FILE [TEST_FILE...] [PYTEST_ARGS...]", file=sys.stderr)
        return 2
    _prepare_environment()

    import pytest

    extra = argv[len(files) + 1:]
    # Bazel already runs each target as its own process, in parallel (--local_test_jobs):
    # no pytest-xdist workers inside (pyproject.toml's addopts asks for them).
    args = [*files, "-p", "no:cacheprovider", "-n", "0"]
    test_tmpdir = os.environ.get("TEST_TMPDIR")
    if test_tmpdir:
        args.append("--basetemp=" + os.path.join(test_tmpdir, "pytest"))
    xml_output = os.environ.get("XML_OUTPUT_FILE")
    if xml_output:
        # Lets Bazel report individual test cases (bazel-testlogs/.../test.xml).
        args.append("--junitxml=" + xml_output)
    status = pytest.main(args + extra)
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        # A plain `pytest` run treats a file without tests as fine; so do we.
        print(f"pytest_main: no tests collected from {' '.join(files)}", file=sys.stderr)
        return 0
    return int(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
