"""Decisions kept on the server: the retired autosave files (readable only with their owner's secret, imported into
the decision store once) and the page's "Keep my decisions on this server", which now writes to the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cleaner.decisions.autosave import (
    IMPORTED_SUFFIX,
    MAGIC,
    AutosaveError,
    AutosaveStore,
    Owner,
    is_token,
    new_token,
)
from cleaner.decisions.records import Decision, Decisions
from cleaner.decisions.store import TEAM_SPACE, DecisionStore, default_url, token_space
from cleaner.ui import autosave as panel

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DIGEST = "d" * 32


def some_decisions() -> Decisions:
    decisions = Decisions()
    decisions.put("/data/a,1.png", Decision("exclude", reason='blurry, "very"', old_label="cat", decided_by="x@y.z"))
    decisions.put("/data/b.png", Decision("keep", reason="kept after review", old_label="dog"))
    decisions.put("/data/c\u00e9.png", Decision("relabel", old_label="dog", new_label="cat"))
    return decisions


def test_round_trip_keeps_every_decision(tmp_path):
    store = AutosaveStore(tmp_path / "autosave")
    owner = Owner.from_token(new_token())
    decisions = some_decisions()
    store.save(owner, DIGEST, decisions)
    assert store.load(owner, DIGEST).decisions == decisions.by_path
    decisions.put("/data/b.png", None)  # a later save replaces the earlier one
    store.save(owner, DIGEST, decisions)
    assert store.load(owner, DIGEST).decisions == decisions.by_path
    assert [p.name for p in (tmp_path / "autosave").iterdir()] == [store.path(owner, DIGEST).name]  # no temp left


def test_file_names_reveal_neither_the_token_nor_the_dataset(tmp_path):
    store = AutosaveStore(tmp_path)
    token = new_token()
    assert is_token(token) and len(token) == 16
    name = store.path(Owner.from_token(token), DIGEST).name
    assert token not in name and DIGEST not in name
    assert name != store.path(Owner.from_token(token), "e" * 32).name  # one list per dataset
    assert name != store.path(Owner.from_email(token), DIGEST).name  # a token never names an e-mail's list


def test_another_token_cannot_load_it(tmp_path):
    store = AutosaveStore(tmp_path)
    mine, theirs = Owner.from_token(new_token()), Owner.from_token(new_token())
    store.save(mine, DIGEST, some_decisions())
    with pytest.raises(AutosaveError, match="No decisions are saved"):
        store.load(theirs, DIGEST)
    with pytest.raises(AutosaveError, match="No decisions are saved"):
        store.load(mine, "e" * 32)  # nor the same token on another dataset
    # Even a file copied to the other token's name is refused: its MAC belongs to the first token.
    store.path(mine, DIGEST).replace(store.path(theirs, DIGEST))
    with pytest.raises(AutosaveError, match="changed outside this app"):
        store.load(theirs, DIGEST)


def test_email_owner_is_case_blind(tmp_path):
    store = AutosaveStore(tmp_path)
    store.save(Owner.from_email("Ann@Example.com "), DIGEST, some_decisions())
    assert len(store.load(Owner.from_email("ann@example.com"), DIGEST).decisions) == 3


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: data.replace(b"exclude", b"keep", 1),  # a decision changed
        lambda data: data + b"/etc/passwd,exclude,,,,\n",  # a line added
        lambda data: data[: len(data) // 2],  # cut short (a torn copy)
        lambda data: data[len(MAGIC) :],  # header gone
        lambda data: b"\x00\xff" * 100,  # not text at all
        lambda data: b"",
    ],
)
def test_a_tampered_file_is_rejected_with_a_message(tmp_path, tamper):
    store = AutosaveStore(tmp_path)
    owner = Owner.from_token(new_token())
    store.save(owner, DIGEST, some_decisions())
    path = store.path(owner, DIGEST)
    path.write_bytes(tamper(path.read_bytes()))
    with pytest.raises(AutosaveError, match="changed outside this app|damaged"):
        store.load(owner, DIGEST)


def test_size_is_bounded_both_ways(tmp_path):
    store = AutosaveStore(tmp_path, max_file_bytes=200)
    owner = Owner.from_token(new_token())
    many = Decisions()
    for i in range(50):
        many.put(f"/data/{i}.png", Decision("exclude"))
    with pytest.raises(AutosaveError, match="download them instead"):
        store.save(owner, DIGEST, many)
    store.path(owner, DIGEST).parent.mkdir(parents=True, exist_ok=True)
    store.path(owner, DIGEST).write_bytes(MAGIC + b"0" * 10_000)
    with pytest.raises(AutosaveError, match="larger than this server allows"):
        store.load(owner, DIGEST)


def test_oldest_lists_go_first_beyond_the_folder_cap(tmp_path):
    one = len(MAGIC) + 65 + len(some_decisions().decisions_csv().encode())
    store = AutosaveStore(tmp_path, max_total_bytes=int(2.5 * one))
    owners = [Owner.from_token(new_token()) for _ in range(4)]
    for age, owner in enumerate(owners):
        store.save(owner, DIGEST, some_decisions())
        os.utime(store.path(owner, DIGEST), (1_000_000 + age, 1_000_000 + age))
    kept = [store.path(o, DIGEST).exists() for o in owners]
    assert kept == [False, False, True, True]


def test_a_cache_folder_that_cannot_be_written_gives_a_message(tmp_path):
    blocker = tmp_path / "autosave"
    blocker.write_text("a file where the folder should be")  # refused even to root, unlike chmod
    with pytest.raises(AutosaveError, match="could not keep your decisions"):
        AutosaveStore(blocker).save(Owner.from_token(new_token()), DIGEST, some_decisions())


def test_tokens_are_checked_before_use():
    for bad in ("", "short", "x" * 16 + "y", "../../etc/passwd", "a" * 15 + "/"):
        with pytest.raises(AutosaveError, match="not a token"):
            Owner.from_token(bad)
    token = new_token()
    assert Owner.from_token(f"  {token}\n").secret == token  # pasted with spaces around


# ---------------------------------------------------------------- the page


def _tick_three(at: AppTest) -> list[str]:
    at.selectbox(key="select_class").set_value("3")
    at.button(key="btn_class").click()
    at.run()
    boxes = [c for c in at.checkbox if c.label == "Exclude"]
    for box in boxes[:3]:
        box.check()
    at.run()
    work = list(at.session_state["cleaner_work"].values())[-1]
    return work.decisions.paths("exclude")


def _store() -> DecisionStore:
    return DecisionStore(default_url(Path(os.environ["CLEANER_CACHE_DIR"])))


def test_page_warns_and_keeps_only_when_asked():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    assert any("a server restart" in c.value and "loses" in c.value for c in at.sidebar.caption)
    assert "Exclusion list" in [b.label for b in at.main.get("download_button")]  # one click away
    excluded = _tick_three(at)
    assert len(excluded) == 3
    assert not at.code  # no token until the user opts in
    at.toggle(key=panel.TOGGLE_KEY).set_value(True)
    at.run()
    assert not at.exception, at.exception
    token = at.code[0].value
    assert is_token(token)
    assert any("3 decisions on this dataset kept on this server" in c.value for c in at.sidebar.caption)
    store = _store()
    kept = store.current(token_space(token), excluded).decisions
    assert sorted(kept) == sorted(excluded)  # in the database, under the token's space
    assert {e.decided_by for e in kept.values()} == {panel.team.token_who(token)}  # a tag, never the token
    assert token not in repr(store.events_since(token_space(token), 0))
    assert store.current(TEAM_SPACE, excluded).decisions == {}


RESTORE_CHILD = r"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=240)
at.run()
at.text_input(key="autosave_token_input").input(sys.argv[2])
at.button(key="btn_autosave_restore").click()
at.run()
at.run()  # a later run: the toggle's default is what a browser drawing it afresh would start it at
work = list(at.session_state["cleaner_work"].values())[-1]
side = at.sidebar
print(json.dumps({"excluded": work.decisions.paths("exclude"), "errors": [str(e.value) for e in at.exception],
                  "messages": [m.value for kind in (side.success, side.info, side.warning, side.error) for m in kind],
                  "toggle": at.toggle(key="autosave_on").value,
                  "toggle_default": at.toggle(key="autosave_on").proto.default}))
"""


def test_decisions_survive_a_server_restart_with_the_token():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.toggle(key=panel.TOGGLE_KEY).set_value(True)
    at.run()
    token = at.code[0].value
    excluded = _tick_three(at)  # written through to the database as they are made
    assert not at.exception, at.exception

    def restore(with_token: str) -> dict:
        # A new Python process: nothing of the first "server" survives but the cache folder (and its database).
        out = subprocess.run(
            [sys.executable, "-c", RESTORE_CHILD, APP, with_token],
            cwd=REPO,
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    back = restore(token)
    assert back["errors"] == [] and sorted(back["excluded"]) == sorted(excluded)
    assert any("3 decisions kept on this server brought into this session" in m for m in back["messages"])
    assert back["toggle"] is True
    assert back["toggle_default"] is True  # a redrawn toggle keeps saving, not switch itself off
    stranger = restore(new_token())
    assert stranger["excluded"] == [] and any("No decisions are kept" in m for m in stranger["messages"])


def _signed_in_page() -> None:
    """The store's panels alone, for a signed-in user (AppTest cannot sign in through a provider)."""
    from cleaner.ui import autosave, cache, team
    from cleaner.ui.state import work_for

    cfg = cache.settings()
    work = work_for(cache.demo_dataset(str(cfg.demo_dir)), user="ann@example.com")
    team.team_mode(work, cfg, "ann@example.com")
    autosave.panel(work, cfg, "ann@example.com")


def test_an_old_autosave_list_is_imported_once_into_the_team_store():
    from cleaner.ui import cache

    cfg = cache.settings()
    demo = cache.demo_dataset(str(cfg.demo_dir))
    paths = [str(p) for p in demo.image_paths[:3]]
    old = Decisions()
    for p in paths:
        old.put(p, Decision("exclude", reason="blurry", decided_by="ann@example.com"))
    files = AutosaveStore.under(cfg.cache_dir)
    owner = Owner.from_email("ann@example.com")
    files.save(owner, demo.digest, old)  # what the retired autosave left on disk

    first = AppTest.from_function(_signed_in_page, default_timeout=240)
    first.run()
    assert not first.exception, first.exception
    assert not first.code and not first.toggle  # signed in: no token, no toggle, always kept
    assert any("shared with your team" in c.value for c in first.sidebar.caption)
    work = list(first.session_state["cleaner_work"].values())[-1]
    assert sorted(work.decisions.paths("exclude")) == sorted(paths)
    assert any("Restored 3 exclusions" in m.value for m in first.sidebar.success)
    assert sorted(_store().current(TEAM_SPACE, paths).decisions) == sorted(paths)
    assert not files.path(owner, demo.digest).exists()  # retired: renamed, never read again
    assert files.path(owner, demo.digest).with_name(files.path(owner, demo.digest).name + IMPORTED_SUFFIX).exists()

    work.decide(0, "keep", "fine after all")  # written through at once
    second = AppTest.from_function(_signed_in_page, default_timeout=240)  # a restart
    second.run()
    again = list(second.session_state["cleaner_work"].values())[-1]
    assert again.decisions.get(paths[0]).kind == "keep"
    assert sorted(again.decisions.paths("exclude")) == sorted(paths[1:])
    assert not any("Restored" in m.value for m in second.sidebar.success)  # imported once only
