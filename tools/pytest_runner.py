"""Bazel py_test main: runs pytest on the test files given as arguments.

Every `pytest_test` target (tools/pytest.bzl) has this file as its main and
passes its test file(s) as arguments. Bazel starts it in the runfiles copy of
the workspace, where the package sources, conftest.py files, pyproject.toml
and configs/ are laid out as in the checkout, so pytest sees the same
rootdir, ini options and conftest files as `python -m pytest` does.

Bazel's test environment is honoured: pytest's temporary directories go
under TEST_TMPDIR, its JUnit XML report goes to XML_OUTPUT_FILE, and extra
pytest options come from PYTEST_ADDOPTS (`--test_env=PYTEST_ADDOPTS=...`).
When a marker expression deselects every test of a file (exit status 5 with
`-m` in PYTEST_ADDOPTS, or in pyproject.toml's addopts, which leaves out the
`slow` tests), the target passes: it has nothing to run in that selection.
"""

import os
import sys
import tomllib

NO_TESTS_COLLECTED = 5


def pytest_args(test_files, environ):
    """The pytest command line for `test_files` under Bazel's `environ`."""
    args = ["-p", "no:cacheprovider", "--rootdir", os.getcwd()]
    if os.path.exists("pyproject.toml"):
        args += ["-c", "pyproject.toml"]
    if environ.get("TEST_TMPDIR"):
        args += ["--basetemp", os.path.join(environ["TEST_TMPDIR"], "pytest")]
    if environ.get("XML_OUTPUT_FILE"):
        args += ["--junitxml", environ["XML_OUTPUT_FILE"]]
    return args + list(test_files)


def marker_selection(environ):
    """True when a `-m` marker expression selects the tests (PYTEST_ADDOPTS or
    the addopts of pyproject.toml)."""
    if "-m" in environ.get("PYTEST_ADDOPTS", "").split():
        return True
    if not os.path.exists("pyproject.toml"):
        return False
    with open("pyproject.toml", "rb") as f:
        options = tomllib.load(f).get("tool", {}).get("pytest", {}).get(
            "ini_options", {})
    return "-m" in str(options.get("addopts", "")).split()


def main(argv):
    """Runs pytest on argv[1:] and returns its exit status."""
    if len(argv) < 2:
        print("usage: pytest_runner.py TEST_FILE... [PYTEST_OPTION...]",
              file=sys.stderr)
        return 2
    # The workspace root (the current directory under `bazel test`) must win
    # over anything else named tf_pixintra on sys.path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    import pytest  # pylint: disable=import-outside-toplevel

    status = int(pytest.main(pytest_args(argv[1:], os.environ)))
    if status == NO_TESTS_COLLECTED and marker_selection(os.environ):
        print("pytest_runner: every test of this file is deselected by "
              "PYTEST_ADDOPTS; nothing to run.")
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
