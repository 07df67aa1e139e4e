#!/bin/sh
# Interpreter of //tools/bazel:venv_py_runtime: the project's virtualenv,
# <repo>/.venv/bin/python3 (created by scripts/setup.sh).
#
# Bazel runs this script from the runfiles tree; its runfiles entry is a symlink
# chain that ends at tools/bazel/venv_python3.sh in the source tree, so the
# repository root is found by resolving it. Works for local (sandboxed or not)
# execution, which is all this project uses.
self=$(readlink -f "$0") || exit 1
root=${self%/tools/bazel/venv_python3.sh}
python="$root/.venv/bin/python3"
if [ ! -x "$python" ]; then
    echo "venv_python3.sh: $python not found; run scripts/setup.sh first" >&2
    exit 1
fi
exec "$python" "$@"
