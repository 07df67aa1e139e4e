#!/usr/bin/env bash
# Sets up the environment and runs every test once (the README's test command; CI runs it too):
# ruff, then the slow tier (pytest marker `slow`: end-to-end subprocess tests and in-process
# tests that train, search or compile for seconds) with pytest, then the fast tier under Bazel
# where Bazel is installed (CI installs it first, .ci/run) and with pytest elsewhere.
#
#     bash scripts/test.sh                   # everything, once
#     bash scripts/test.sh -m "not slow"     # arguments: pytest alone runs `tests "$@"`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m ruff check .
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider)
if [ $# -gt 0 ]; then
  exec "${pytest[@]}" tests "$@"
fi
# pytest spreads the slow tier's files over pytest-xdist workers, one more than cores (at most
# 5), so that a core has work while a worker waits for a program it started (2 cores: 210-236 s
# with 3 workers, 242 s with 4; both cores are 94-97% busy). The programs are forked from a
# server that imported TensorFlow once (tests/support/programs.py).
# Bazel runs the fast tier, one target (a suite of test files) per core. The two tiers side by
# side took as long as one after the other (433 s vs 428 s): the cores are busy either way.
slow_workers=$(( $(nproc) + 1 < 5 ? $(nproc) + 1 : 5 ))
echo "[test] slow tier (pytest -m slow, $slow_workers workers)"
"${pytest[@]}" tests -m slow -n "$slow_workers"
if bash .ci/bazel_test.sh --available; then
  echo "[test] fast tier under Bazel (bazel test //... --test_tag_filters=-slow)"
  bash .ci/bazel_test.sh --test_tag_filters=-slow --test_arg=-m --test_arg="not slow"
else
  echo "[test] fast tier (pytest -m 'not slow'; Bazel is not installed)"
  "${pytest[@]}" tests -m "not slow"
fi
