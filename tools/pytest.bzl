"""Bazel macros that run the project's pytest files, one target per file.

`pytest_test` wraps a native `py_test` whose main is
//tools:pytest_runner.py; `pytest_tests` makes one `pytest_test` per test
file found by a glob, so new tests are picked up without editing BUILD.

Naming rule for tags (see README, "Bazel"):
- `tests/**/test_*_e2e.py`: tag "e2e", size "large" (heavy end-to-end runs;
  excluded by `--config=unit` / `--test_tag_filters=-e2e`).
- every other file: size "medium".
- files listed in `ci_files` also get the tag "bazel_ci" (the subset that
  tools/bazel_test.sh runs in CI).
"""

RUNNER = "//tools:pytest_runner.py"

def pytest_test(name, srcs, deps = [], data = [], args = [], tags = [], size = "medium", **kwargs):
    """One py_test that runs pytest on `srcs` (test files of this package).

    Args:
      name: target name.
      srcs: the test file(s) pytest runs.
      deps: py_library targets the tests import.
      data: files the tests read (conftest.py files, pyproject.toml, configs).
      args: extra pytest options, appended after the test files.
      tags: Bazel tags.
      size: Bazel test size ("small", "medium", "large", "enormous").
      **kwargs: passed on to py_test (timeout, env, shard_count, ...).
    """
    native.py_test(
        name = name,
        srcs = srcs + [RUNNER],
        main = RUNNER,
        args = ["$(rootpath %s)" % src for src in srcs] + args,
        deps = deps,
        data = data,
        tags = tags,
        size = size,
        python_version = "PY3",
        srcs_version = "PY3",
        # Keep the runfiles tree free of generated __init__.py files, so
        # pytest imports tests exactly as it does in the checkout.
        legacy_create_init = False,
        **kwargs
    )

def test_name(path):
    """Target name of a test file: its path without `.py`."""
    return path[:-len(".py")] if path.endswith(".py") else path

def pytest_tests(files, deps = [], data = [], ci_files = [], e2e_suffix = "_e2e.py"):
    """One pytest_test per file in `files`, tagged by the naming rule.

    Args:
      files: test file paths relative to this package (e.g. from glob()).
      deps: py_library targets every test imports.
      data: files every test reads.
      ci_files: files whose targets get the "bazel_ci" tag.
      e2e_suffix: file-name ending that marks an end-to-end test file.

    Returns:
      The list of target names made.
    """
    names = []
    for path in files:
        is_e2e = path.endswith(e2e_suffix)
        tags = ["e2e"] if is_e2e else ["unit"]
        if path in ci_files:
            tags.append("bazel_ci")
        name = test_name(path)
        pytest_test(
            name = name,
            srcs = [path],
            deps = deps,
            data = data,
            tags = tags,
            size = "large" if is_e2e else "medium",
        )
        names.append(name)
    return names
