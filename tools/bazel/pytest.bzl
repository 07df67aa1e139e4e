"""`py_pytest_test`: a py_test that runs pytest files through tools/bazel/pytest_main.py."""

_MAIN = "//tools/bazel:pytest_main.py"

def py_pytest_test(
        name,
        srcs,
        deps = ["//:autonl_tf", "//:test_support"],
        size = "medium",
        timeout = "long",
        **kwargs):
    """Declares a py_test running the pytest files `srcs` in one pytest process.

    Args:
      name: target name.
      srcs: the test files, e.g. ["tests/test_foo.py"].
      deps: py_library targets the test needs; by default the library and the
        test support files (tests/conftest.py, helpers, pyproject.toml, ...).
      size: Bazel test size (resources); "medium" by default.
      timeout: Bazel test timeout; "long" (900 s) by default because several
        tests start TensorFlow in subprocesses.
      **kwargs: anything else py_test accepts (tags, data, shard_count, ...).
    """
    native.py_test(
        name = name,
        srcs = srcs + [_MAIN],
        main = _MAIN,
        args = ["$(location %s)" % src for src in srcs],
        deps = deps,
        size = size,
        timeout = timeout,
        python_version = "PY3",
        srcs_version = "PY3",
        # Keep the runfiles tree identical to the source tree: no __init__.py
        # files invented by Bazel (tests/ is not a package for pytest).
        legacy_create_init = False,
        **kwargs
    )
