"""The map's asset folder: what Streamlit serves as files when the project is installed (cleaner/ui/map/component.py).

plotly.js is vendored there from the plotly wheel; these tests check it is that plotly.js, of the version the code
names, with its licence, and that the folder Streamlit is told about holds every file the map's modules import.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import plotly
import pytest

from cleaner.ui.map.component import MAP_COMPONENT, MAP_MODULES, PLOTLY_JS_FILE, PLOTLY_JS_VERSION

REPO = Path(__file__).resolve().parents[1]
FRONTEND = REPO / "cleaner" / "ui" / "map" / "frontend"
VENDORED = FRONTEND / PLOTLY_JS_FILE


def test_the_vendored_plotly_js_is_the_version_the_code_names_with_its_licence():
    text = VENDORED.read_text(encoding="utf-8")
    header = text[:200]
    assert f"* plotly.js v{PLOTLY_JS_VERSION}\n" in header
    assert "Licensed under the MIT license" in header
    assert text.rstrip().endswith("window.Plotly = Plotly;\nreturn Plotly;\n}));")  # whole, not cut short
    assert len(text) > 3_000_000
    assert "Permission is hereby granted" in (VENDORED.parent / "plotly-LICENSE.txt").read_text()


def test_the_vendored_plotly_js_is_the_plotly_wheels_own_when_the_versions_match():
    wheel = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    wheel_version = re.search(r"plotly\.js v(\S+)", wheel.read_text(encoding="utf-8")[:200]).group(1)
    if wheel_version != PLOTLY_JS_VERSION:
        pytest.skip(
            f"the installed plotly wheel carries plotly.js {wheel_version}, the vendored one is {PLOTLY_JS_VERSION}"
        )
    assert wheel.read_bytes() == VENDORED.read_bytes()


def test_pyproject_declares_the_map_elements_asset_folder_and_it_holds_what_they_load():
    components = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["streamlit"]["component"]["components"]
    declared = {f"cleaner.{c['name']}": REPO / "cleaner" / c["asset_dir"] for c in components}
    assert set(declared) == {MAP_COMPONENT, "cleaner.mapcolours", "cleaner.mapmarks"}
    assert all(folder.resolve() == FRONTEND.resolve() for folder in declared.values())
    for name in (*MAP_MODULES, "colours_element.js", "marks_element.js", PLOTLY_JS_FILE):
        assert (FRONTEND / name).is_file(), name
    # served as files, the modules import each other by relative path: every import must name a file there
    for module in MAP_MODULES:
        for target in re.findall(r'^import .* from "\./([^"]+)";$', (FRONTEND / module).read_text(), re.MULTILINE):
            assert target in MAP_MODULES, f"{module} imports {target}, which the inline bundle leaves out"


def test_requirements_install_the_project_itself_so_streamlit_finds_the_asset_folder():
    lines = [line.split("#", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert "-e ." in lines
