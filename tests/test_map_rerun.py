"""An unchanged map costs a rerun no work in proportion to its points (issue 27 item 3), on the real page (AppTest).

Counted, not timed: the payload builder and the message encoder are not called, and what Streamlit hashes and
serialises for the map's points and colours is a reference of a few dozen bytes, not the messages themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import cleaner.ui.map.payload as payload_module
import cleaner.ui.map_panel as map_panel
from cleaner.issues.registry import WORST

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
REFERENCE_MAX_BYTES = 200


def map_elements(at: AppTest) -> dict[str, object]:
    """The map's elements by component name ("cleaner.map", "cleaner.mapcolours", "cleaner.mapmarks")."""
    return {e.proto.component_name: e.proto for e in at.get("bidi_component")}


@pytest.fixture
def counted(monkeypatch):
    """How often the page built a map payload and encoded a message, since the last reset."""
    calls = {"build": 0, "encode": 0}

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    map_panel._payload.clear()  # the server's payload cache outlives an AppTest: earlier tests drew the demo's map
    monkeypatch.setattr(map_panel, "build_payload", counting("build", map_panel.build_payload))
    monkeypatch.setattr(payload_module, "_pack", counting("encode", payload_module._pack))
    return calls


def test_a_rerun_that_changes_nothing_on_the_map_builds_encodes_and_sends_nothing_of_its_points(counted):
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    first = map_elements(at)
    assert first["cleaner.map"].WhichOneof("data") == "bytes"  # the first run hands the browser the messages
    points = payload_module.unpack(first["cleaner.map"].bytes)[0]
    colours = payload_module.unpack(first["cleaner.mapcolours"].bytes)[0]
    assert counted["build"] >= 1 and counted["encode"] >= 2

    for change in ("nothing", "selection"):
        counted.update(build=0, encode=0)
        if change == "selection":  # a new selection: only the marks element changes
            at.selectbox(key="select_class").set_value(at.selectbox(key="select_class").options[1])
            at.button(key="btn_class").click()
        at.run()
        assert not at.exception, at.exception
        assert counted == {"build": 0, "encode": 0}, change
        again = map_elements(at)
        for name, head in (("cleaner.map", points), ("cleaner.mapcolours", colours)):
            proto = again[name]
            assert proto.WhichOneof("data") == "json", (change, name)
            assert len(proto.json) < REFERENCE_MAX_BYTES
            assert json.loads(proto.json)["ref"] == head["ref"]  # the message the browser holds, by its tag
    assert len(first["cleaner.map"].bytes) > 10 * REFERENCE_MAX_BYTES


def test_a_recolouring_sends_the_new_colours_whole():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    before = payload_module.unpack(map_elements(at)["cleaner.mapcolours"].bytes)[0]
    colour_box = next(s for s in at.selectbox if s.label == "Colour the map by")
    assert colour_box.options[0] == "Class" and len(colour_box.options) > 1  # by class, and scores to choose from
    colour_box.set_value(WORST)  # the option's value; the box shows it as "Worst of all scores"
    at.run()
    assert not at.exception, at.exception
    proto = map_elements(at)["cleaner.mapcolours"]
    assert proto.WhichOneof("data") == "bytes"
    after = payload_module.unpack(proto.bytes)[0]
    assert after["ref"] != before["ref"] and after["has_score"] and not before["has_score"]
