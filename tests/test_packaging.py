"""The package as a user installs it: the dependencies declared once, and `pip install .` giving a `cleaner`
command that works outside the checkout."""

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> set[str]:
    """The requirement specifiers of a requirements file: comments, blank lines and -r includes left out."""
    found = set()
    for line in path.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec and not spec.startswith("-"):
            found.add(re.sub(r"\s+", "", spec))
    return found


def test_requirements_files_repeat_what_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _requirements(REPO / "requirements.txt") == {re.sub(r"\s+", "", d) for d in project["dependencies"]}
    dev = {re.sub(r"\s+", "", d) for d in project["optional-dependencies"]["dev"]}
    assert _requirements(REPO / "requirements-dev.txt") == dev


def test_every_third_party_import_of_the_package_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = [d for extra, deps in project["optional-dependencies"].items() if extra != "dev" for d in deps]
    declared = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"] + optional}
    declared |= {"distributed"}  # dask[distributed] installs the `distributed` package
    import_names = {"PIL": "pillow", "sklearn": "scikit-learn", "faiss": "faiss-cpu", "umap": "umap-learn"}
    stdlib = set(sys.stdlib_module_names)
    imported = set()
    for path in (REPO / "cleaner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {import_names.get(m, m).lower() for m in imported - stdlib - {"cleaner", "__future__"}}
    assert third_party <= declared, sorted(third_party - declared)


def test_pip_install_gives_a_working_cleaner_command(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "cleaner" / "ui" / "map" / "frontend" / "map.js").is_file()  # the map's scripts are installed
    assert (target / "cleaner" / "ui" / "map" / "frontend" / "vendor" / "plotly.min.js").is_file()  # and plotly.js
    assert list((target / "cleaner" / "layout" / "assets" / "layouts").glob("*.npy"))  # and the demo's layouts
    rng = np.random.default_rng(0)
    npz = tmp_path / "data.npz"
    np.savez(
        npz,
        embeddings=rng.normal(size=(60, 8)).astype(np.float32),
        labels=np.repeat([0, 1, 2], 20),
        image_paths=np.array([f"/nowhere/{i}.png" for i in range(60)]),
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"  # not the checkout: the installed copy must stand on its own
    work.mkdir()
    helped = subprocess.run(
        [str(target / "bin" / "cleaner"), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and "scan" in helped.stdout and "effect" in helped.stdout
    scanned = subprocess.run(
        [str(target / "bin" / "cleaner"), "scan", str(npz), "--out", str(tmp_path / "r.csv"), "--no-image-check"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scanned.returncode == 0, scanned.stderr
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 61  # a header and one row per image
    origin = subprocess.run(
        [sys.executable, "-c", "import cleaner; print(cleaner.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert origin.startswith(str(target))
