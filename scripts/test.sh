#!/usr/bin/env bash
# Sets up the environment and runs every test once (the README's test command; CI runs it too):
# ruff, then side by side the slow tier (pytest marker `slow`: end-to-end subprocess tests and
# in-process tests that train, search or compile for seconds) with pytest and the fast tier
# under Bazel where Bazel is installed (CI installs it first, .ci/run), with pytest elsewhere.
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
# Both tiers run side by side: the slow tier with pytest (pyproject.toml's addopts spread its
# files over pytest-xdist workers), the fast tier under Bazel (one target per suite of test
# files, one per core) where Bazel is installed and with pytest elsewhere. Neither keeps every
# core busy to its end; together they do. The fast tier's log is printed when both are done.
fast_log=$(mktemp /tmp/autonl_fast_tier.XXXXXX)
trap 'rm -f "$fast_log"' EXIT
if bash .ci/bazel_test.sh --available; then
  fast_tier="fast tier under Bazel (bazel test //... --test_tag_filters=-slow)"
  bash .ci/bazel_test.sh --test_tag_filters=-slow --test_arg=-m --test_arg="not slow" \
    >"$fast_log" 2>&1 &
else
  fast_tier="fast tier (pytest -m 'not slow'; Bazel is not installed)"
  "${pytest[@]}" tests -m "not slow" >"$fast_log" 2>&1 &
fi
fast_pid=$!
echo "[test] slow tier (pytest -m slow), with the $fast_tier in the background"
slow_status=0
"${pytest[@]}" tests -m slow || slow_status=$?
fast_status=0
wait "$fast_pid" || fast_status=$?
echo "[test] $fast_tier: exit status $fast_status"
cat "$fast_log"
echo "[test] slow tier: exit status $slow_status; fast tier: exit status $fast_status"
[ "$slow_status" -eq 0 ] && [ "$fast_status" -eq 0 ]
