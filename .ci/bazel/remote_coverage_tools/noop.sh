#!/bin/sh
# CI-only stand-in: coverage is not collected in CI, so the coverage tools do nothing.
exit 0
