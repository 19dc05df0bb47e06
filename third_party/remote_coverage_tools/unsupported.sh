#!/bin/sh
# Stand-in for Bazel's coverage tools (see third_party/README.md).
echo "bazel coverage is not supported offline in this project; use pytest --cov" >&2
exit 1
