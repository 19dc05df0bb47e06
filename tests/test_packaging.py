"""tf_pixintra is a package: pyproject.toml builds and installs it, its pins
are requirements*.txt's, and the benchmarks need no sys.path edits."""

import os
import re
import shutil
import subprocess
import sys
import tomllib


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _pins(name):
    """Requirement lines of a requirements file (comments dropped)."""
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        lines = [line.split("#")[0].strip() for line in f]
    return sorted(line for line in lines if line)


def test_pyproject_pins_are_the_requirements_files():
    project = _pyproject()
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert sorted(project["project"]["dependencies"]) == _pins(
            "requirements.txt")
    extras = project["project"]["optional-dependencies"]
    assert sorted(extras["test"]) == _pins("requirements-test.txt")
    assert sorted(extras["export"]) == _pins("requirements-export.txt")
    if os.path.exists(os.path.join(ROOT, "requirements-torch.txt")):
        assert sorted(extras["torch"]) == _pins("requirements-torch.txt")
    assert "torch==2.13.0" in extras["torch"]
    for pin in (project["project"]["dependencies"]
                + [p for extra in extras.values() for p in extra]):
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.+]*", pin), pin


def test_every_module_and_file_of_the_library_is_packaged():
    from setuptools import find_packages

    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = set(find_packages(ROOT, include=include))
    folders = set()
    for folder, dirnames, filenames in os.walk(os.path.join(ROOT, "tf_pixintra")):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        relative = os.path.relpath(folder, ROOT)
        if any(name.endswith(".py") for name in filenames):
            folders.add(relative.replace(os.sep, "."))
        # Nothing but Python sources: no data file that an install would drop.
        others = [n for n in filenames if not n.endswith((".py", ".pyc"))]
        assert others == [], (relative, others)
    assert folders <= packaged, folders - packaged  # no folder lacks __init__.py


def test_benchmarks_leave_sys_path_alone():
    offenders = []
    for folder in ("benchmarks",):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                text = open(os.path.join(ROOT, folder, name)).read()
                if re.search(r"sys\.path\s*(\.|\[|\+?=)", text):
                    offenders.append(f"{folder}/{name}")
    assert offenders == []
    # Documented as modules run from the checkout root.
    for doc in ("README.md", os.path.join("benchmarks", "BENCHMARKS.md")):
        assert "python benchmarks/" not in open(os.path.join(ROOT, doc)).read()
    done = subprocess.run(
            [sys.executable, "-m", "benchmarks.reproduce_toyscapes", "--help"],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=""), capture_output=True,
            text=True, timeout=120)
    assert done.returncode == 0 and "--seeds" in done.stdout, done.stderr


def test_pip_install_into_a_fresh_venv(tmp_path):
    """`pip install .` (offline, no build isolation) gives an importable,
    runnable tf_pixintra outside the checkout."""
    source = tmp_path / "src"  # a copy: the in-tree build leaves build/
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "tf_pixintra"), source / "tf_pixintra",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                    "--system-site-packages", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PYTHONPATH="", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", str(source)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = subprocess.run(
            [python, "-c", "import tf_pixintra, tf_pixintra.export_contract as c;"
             "print(tf_pixintra.__file__, c.MODEL_NAME)"],
            cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    installed, name = done.stdout.split()
    assert installed.startswith(str(venv)) and name == "pixintra"
    done = subprocess.run([python, "-m", "tf_pixintra.train", "--helpshort"],
                          cwd=outside, env=env, capture_output=True, text=True,
                          timeout=120)
    # The project's grouped short help (tf_pixintra.config.grouped_help).
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tf_pixintra.train flags, grouped by the stage" in done.stdout
    assert "Stage II: intra (Sec 4.2):" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
