#!/usr/bin/env bash
# Runs the project's tests under Bazel, offline, with Debian's
# bazel-bootstrap (Bazel 4.2.3); installs it first if `bazel` is missing.
#
# usage: tools/bazel_test.sh [--config=ci|unit|all] [BAZEL_TEST_ARG...]
#
#   --config=ci    (default) the "bazel_ci" subset: the fast tests of the
#                  pure modules (labels, losses, metrics, subdomains,
#                  tfrecords); this is what CI runs.
#   --config=unit  every test file except *_e2e.py, and without tests
#                  marked @pytest.mark.e2e.
#   --config=all   every test target (`bazel test //...`).
#
# Other arguments go to `bazel test` (e.g. a target pattern such as
# //:tests/test_losses; the default pattern is //...). The Bazel server is
# shut down at the end, and the exit status is that of `bazel test`.
# BAZEL_TEST_TIMEOUT (seconds, default 1200) bounds the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v bazel >/dev/null 2>&1; then
    echo "bazel_test.sh: installing Debian's bazel-bootstrap" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq bazel-bootstrap >/dev/null \
        || { echo "bazel_test.sh: apt-get install bazel-bootstrap failed" >&2; exit 1; }
fi

config="ci"
args=()
patterns=()
for arg in "$@"; do
    case "$arg" in
        --config=ci|--config=unit|--config=all) config="${arg#--config=}" ;;
        //*|:*) patterns+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done
[ "$config" = "all" ] || args=("--config=$config" "${args[@]}")
[ "${#patterns[@]}" -gt 0 ] || patterns=("//...")

echo "bazel_test.sh: bazel test ${args[*]} ${patterns[*]}"
start=$(date +%s)
timeout "${BAZEL_TEST_TIMEOUT:-1200}" \
    bazel test "${args[@]}" -- "${patterns[@]}"
status=$?
bazel shutdown >/dev/null 2>&1 || true
echo "bazel_test.sh: exit status $status after $(( $(date +%s) - start )) s"
exit "$status"
