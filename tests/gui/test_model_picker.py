"""The Ctrl+K model picker, driven by keys like a user drives it (real Background, real model listing)."""

from __future__ import annotations

import re
import shutil

import pytest
from PySide6.QtCore import Qt

from desktop_llm.gui.background import Background
from desktop_llm.gui.model_picker import ModelPicker


@pytest.fixture()
def open_picker(qtbot, tmp_path, monkeypatch, bundled_ref):
    """Factory: a shown picker over a private library (only the bundled model, plus what a test adds)."""
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    background = Background()

    def make(loaded_id: str | None = None, rows: int | None = 1) -> ModelPicker:
        picker = ModelPicker(background, loaded_id)
        qtbot.addWidget(picker)
        picker.show()
        if rows is not None:
            qtbot.waitUntil(lambda: len(picker.row_texts()) == rows, timeout=10_000)
        return picker

    yield make
    background.drain()
    background.shutdown()


def test_lists_the_bundled_model_with_its_size(qtbot, open_picker, bundled_ref):
    picker = open_picker(rows=None)
    assert picker.status.isVisible() and picker.status.text() == "Looking for models…"
    assert picker.focusWidget() is picker.filter and picker.filter.placeholderText() == "Search models…"
    qtbot.waitUntil(lambda: picker.row_texts() != [], timeout=10_000)
    assert not picker.status.isVisible()

    [row] = picker.row_texts()
    name, detail = row.split("\n")
    assert name == bundled_ref.name and "loaded" not in name
    megabytes = int(re.search(r"(\d+) MB", detail).group(1))
    assert abs(megabytes - bundled_ref.size_bytes / 1e6) < 1
    assert detail.startswith("GGUF") and "llama" in detail and "context 8,192" in detail and "bundled" in detail


def test_filter_that_matches_nothing_shows_how_to_add_a_model(qtbot, open_picker):
    picker = open_picker()
    assert not picker.status.isVisible()
    qtbot.keyClicks(picker.filter, "mistral nothing")
    assert picker.row_texts() == []
    assert picker.status.isVisible()
    assert "No models match “mistral nothing”" in picker.status.text()
    assert "add a GGUF file or model folder" in picker.status.text()
    picker.filter.clear()
    assert len(picker.row_texts()) == 1 and not picker.status.isVisible()


def test_typing_part_of_the_name_and_enter_picks_it(qtbot, open_picker, bundled_ref):
    picker = open_picker()
    qtbot.keyClicks(picker.filter, "SMOL instruct")  # any case; every word must match
    assert len(picker.row_texts()) == 1
    with qtbot.waitSignal(picker.chosen, timeout=1000) as picked:
        qtbot.keyClick(picker.filter, Qt.Key.Key_Return)
    assert picked.args == [bundled_ref]
    assert not picker.isVisible()


def test_loaded_model_is_marked_and_can_be_unloaded(qtbot, open_picker, bundled_ref):
    picker = open_picker(loaded_id=bundled_ref.id)
    [row] = picker.row_texts()
    assert row.split("\n")[0].endswith("● loaded") and picker.current_ref() == bundled_ref
    assert picker.unload_button.isEnabled()
    with qtbot.waitSignal(picker.unload_requested, timeout=1000):
        qtbot.mouseClick(picker.unload_button, Qt.MouseButton.LeftButton)

    picker.set_loaded(None)
    assert "loaded" not in picker.row_texts()[0] and not picker.unload_button.isEnabled()
    picker.set_loaded(bundled_ref.id)
    # Picking what is already loaded only closes the picker: a reload would just cost time.
    with qtbot.assertNotEmitted(picker.chosen):
        qtbot.keyClick(picker.filter, Qt.Key.Key_Return)
    assert not picker.isVisible()


def test_nothing_loaded_means_no_unload(open_picker):
    assert not open_picker().unload_button.isEnabled()


def test_adding_a_broken_file_says_why_and_keeps_the_list(qtbot, open_picker, tmp_path):
    picker = open_picker()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a model\n" * 50)
    picker.add_path(broken)
    qtbot.waitUntil(lambda: "Could not add broken.gguf" in picker.message.text(), timeout=10_000)
    assert "is not a GGUF model file" in picker.message.text() and picker.message.isVisible()

    (tmp_path / "notes.txt").write_text("hello")
    picker.add_path(tmp_path / "notes.txt")
    qtbot.waitUntil(lambda: "neither a .gguf file nor a model folder" in picker.message.text(), timeout=10_000)

    picker.refresh()  # the broken file was not recorded in the library
    qtbot.waitUntil(lambda: not picker.status.isVisible(), timeout=10_000)
    assert len(picker.row_texts()) == 1 and picker.isVisible()


def test_adding_a_model_file_lists_and_selects_it(qtbot, open_picker, tmp_path, bundled_ref):
    picker = open_picker()
    qtbot.keyClicks(picker.filter, "smol")
    mine = tmp_path / "my-tiny-model.gguf"
    shutil.copyfile(bundled_ref.path, mine)
    picker.add_path(mine)
    qtbot.waitUntil(lambda: len(picker.row_texts()) == 2, timeout=10_000)
    assert picker.filter.text() == "" and "Added my-tiny-model.gguf" in picker.message.text()
    added = picker.current_ref()
    assert added.name == "my-tiny-model.gguf" and added.path == str(mine.resolve())
    assert picker.row_texts()[1].endswith("llama · context 8,192 · imported")

    qtbot.keyClick(picker.filter, Qt.Key.Key_Up)
    row = picker.list.visualItemRect(picker.list.item(1)).center()
    with qtbot.waitSignal(picker.chosen, timeout=1000) as picked:
        qtbot.mouseClick(picker.list.viewport(), Qt.MouseButton.LeftButton, pos=row)  # a double-click's first press
        qtbot.mouseDClick(picker.list.viewport(), Qt.MouseButton.LeftButton, pos=row)
    assert picked.args == [added] and not picker.isVisible()


def test_a_damaged_model_is_greyed_and_cannot_be_picked(qtbot, open_picker, tmp_path):
    snapshot = tmp_path / "hub" / "models--someone--half-done" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "half.Q4_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")  # a download cut short
    picker = open_picker(rows=2)
    assert picker.current_ref().source == "bundled"  # the first model that can be loaded
    qtbot.keyClick(picker.filter, Qt.Key.Key_Down)
    damaged = picker.current_ref()
    assert damaged.name == "someone/half-done · half.Q4_0.gguf" and "cut short" in picker.row_texts()[1]
    assert picker.list.currentItem().toolTip() == damaged.error

    with qtbot.assertNotEmitted(picker.chosen):
        qtbot.keyClick(picker.filter, Qt.Key.Key_Return)
    assert picker.isVisible() and picker.message.isVisible()
    assert picker.message.text() == f"{damaged.name} cannot be loaded: {damaged.error}"

    qtbot.keyClick(picker.filter, Qt.Key.Key_Up)
    assert picker.current_ref().source == "bundled" and not picker.message.isVisible()
    qtbot.keyClick(picker.filter, Qt.Key.Key_Escape)
    assert not picker.isVisible()
