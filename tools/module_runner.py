"""Bazel py_binary main: runs a tf_pixintra entry module like `python -m`.

`bazel run //:train -- --flagfile configs/toyscapes.cfg` starts this file
with the module name (`tf_pixintra.train`) as its first argument. It runs
the module as `__main__` with the remaining arguments, from the directory
`bazel run` was called in (BUILD_WORKING_DIRECTORY), so relative paths such
as the flagfile or `--run_dir runs/x` mean the same as with
`python -m tf_pixintra.train ...` there.
"""

import os
import runpy
import sys


def main(argv):
    """Runs the module argv[1] with argv[2:] as its arguments."""
    if len(argv) < 2:
        print("usage: module_runner.py MODULE [ARG...]", file=sys.stderr)
        return 2
    module = argv[1]
    # Import from the runfiles copy of the workspace (the current directory
    # when Bazel starts us), then work where the user called `bazel run`.
    sys.path.insert(0, os.getcwd())
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
    sys.argv = [module] + argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
