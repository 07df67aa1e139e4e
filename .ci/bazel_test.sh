#!/usr/bin/env bash
# CI: run the Python tests with `bazel test //...`, offline.
#
#     .ci/bazel_test.sh [extra bazel test args, e.g. //:test_foo]
#     .ci/bazel_test.sh --install_only   # install Bazel if missing, run nothing
#     .ci/bazel_test.sh --available      # exit 0 if Bazel is installed (installs nothing)
#
# Needs the repository and its virtualenv (<repo>/.venv, scripts/setup.sh). Installs
# Debian's Bazel 4.2.3 (bazel-bootstrap, bazel-rules-java) with apt when `bazel`
# is missing. Bazel's default workspace downloads rules_cc, rules_java and
# remote_coverage_tools; here they are replaced by local repositories with
# --override_repository (absolute paths only, in Bazel 4.2.3):
#
#     rules_cc              -> .ci/bazel/rules_cc (forwards the C++ rules to native.*)
#     rules_java            -> /usr/share/bazel/rules/java (Debian's bazel-rules-java)
#     remote_coverage_tools -> .ci/bazel/remote_coverage_tools (no-op tools)
#
# and .ci/bazel/ci.bazelrc pins the interpreter to .venv/bin/python3. None of this
# is used by a plain `bazel test //...`, which fetches the real repositories.
#
# Environment: AUTONL_BAZEL (the Bazel binary; default Debian's /usr/bin/bazel-4),
# AUTONL_BAZEL_OUTPUT_USER_ROOT (default ~/.cache/autonl_tf-bazel-ci),
# AUTONL_BAZEL_RULES_JAVA (default /usr/share/bazel/rules/java).
# Exit status: Bazel's (0 = all tests passed, 3 = some failed, ...).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"

log() { echo "bazel_test.sh: $*" >&2; }

rules_java=${AUTONL_BAZEL_RULES_JAVA:-/usr/share/bazel/rules/java}

apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { log "need root or sudo to apt-get install $*"; exit 2; }
        sudo=(sudo)
    fi
    local attempt
    for attempt in 1 2 3; do
        if "${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null; then
            return 0
        fi
        log "apt-get install $* failed (attempt $attempt of 3)"
        sleep $((attempt * 10))
    done
    exit 2
}

# The Bazel binary. Debian's /usr/bin/bazel is a launcher script that insists on
# the version in .bazelversion (4.2.3, for bazelisk users) being installed as
# /usr/bin/bazel-4.2.3, while Debian's bazel-bootstrap 4.2.3 is /usr/bin/bazel-4:
# call that directly. AUTONL_BAZEL overrides the choice.
find_bazel() {
    if [ -n "${AUTONL_BAZEL:-}" ]; then
        bazel=$AUTONL_BAZEL
    elif command -v bazel-4 >/dev/null; then
        bazel=$(command -v bazel-4)
    elif command -v bazel >/dev/null; then
        bazel=$(command -v bazel)
    else
        bazel=
    fi
}

find_bazel
# --available: exit 0 when Bazel and the Java rules are installed (nothing is installed or run).
if [ "${1:-}" = "--available" ]; then
    [ -n "$bazel" ] && [ -f "$rules_java/java/defs.bzl" ] && exit 0
    exit 1
fi
missing=()
[ -n "$bazel" ] || missing+=(bazel-bootstrap)
[ -f "$rules_java/java/defs.bzl" ] || missing+=(bazel-rules-java)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    apt_install "${missing[@]}"
    find_bazel
    [ -n "$bazel" ] || { log "no bazel binary after installing ${missing[*]}"; exit 2; }
fi

# --install_only: stop once Bazel is installed (CI, before the README test command uses it).
if [ "${1:-}" = "--install_only" ]; then
    log "bazel: $bazel"
    exit 0
fi

if [ ! -x "$root/.venv/bin/python3" ]; then
    log "$root/.venv/bin/python3 is missing: run scripts/setup.sh first"
    exit 2
fi

output_user_root=${AUTONL_BAZEL_OUTPUT_USER_ROOT:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/autonl_tf-bazel-ci}
mkdir -p "$output_user_root"

startup=(
    --output_user_root="$output_user_root"
    --bazelrc="$root/.ci/bazel/ci.bazelrc"
    --max_idle_secs=60
)
overrides=(
    --override_repository=rules_cc="$root/.ci/bazel/rules_cc"
    --override_repository=rules_java="$rules_java"
    --override_repository=remote_coverage_tools="$root/.ci/bazel/remote_coverage_tools"
)
# Extra arguments are passed to `bazel test`; without a target pattern among them, //... .
args=("$@")
have_target=0
for arg in "${args[@]}"; do
    case "$arg" in -*) ;; *) have_target=1 ;; esac
done
[ "$have_target" -eq 1 ] || args+=(//...)

status=0
"$bazel" "${startup[@]}" test "${overrides[@]}" "${args[@]}" || status=$?
# Free the Bazel server's memory now instead of after --max_idle_secs.
"$bazel" "${startup[@]}" shutdown >/dev/null 2>&1 || true
if [ "$status" -eq 0 ]; then
    log "all Bazel tests passed"
else
    log "bazel test failed (exit status $status)"
fi
exit "$status"
