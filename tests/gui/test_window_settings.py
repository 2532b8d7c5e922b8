"""The main window's model picker, Settings page, per-chat settings and context handling."""

from __future__ import annotations

import json
import shutil

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from desktop_llm.core.models import import_model, ref_for_path
from desktop_llm.core.settings import settings_path
from desktop_llm.core.store import ChatStore


def test_a_chat_too_long_for_the_context_leaves_out_old_turns_and_says_so(qtbot, ui, open_window, tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    conv = store.create_conversation("Long", system_prompt="You are a helpful assistant called Quill.")
    parent = None
    for i in range(12):
        q = store.add_message(conv.id, "user", f"Question {i}: " + "tell me about rivers. " * 12, parent)
        parent = store.add_message(conv.id, "assistant", f"Answer {i}: " + "rivers flow to the sea. " * 12, q.id).id
    win = open_window({"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 24}, context_size=512)
    chat = win.chat
    chat.open_conversation(conv.id)
    # Before any reply the gauge shows an estimate from the model's tokenizer: more than fits.
    qtbot.waitUntil(lambda: "≈" in chat.context_label.text(), timeout=10_000)
    assert chat.context_bar.value() == chat.context_bar.maximum() == 512
    done = ui.send_and_wait(win, "What is the capital of France?")
    assert done["dropped_messages"] >= 2
    assert "left out so this reply fitted" in chat.transcript_text()
    assert "Paris" in chat.path[-1].content
    used = done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]
    assert used <= 512 and f"{used:,} / 512" in chat.context_label.text()
    win.persistence.background.drain()
    assert len(store.current_path(conv.id)) == 26  # nothing is removed from the saved chat


def test_each_chat_keeps_its_own_system_prompt_and_parameters(qtbot, ui, open_window, tmp_path):
    win = open_window({"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 8})
    chat, panel = win.chat, win.chat.settings_panel
    plain = ui.send_and_wait(win, "Hello!")
    qtbot.keyClick(chat.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)

    qtbot.mouseClick(chat.settings_button, Qt.MouseButton.LeftButton)
    assert panel.isVisible()
    pirate = ("You are a pirate. Always talk like a pirate, with many arrs, and tell the user about your ship, "
              "your parrot, the treasure you buried on an island far away, and the storms you sailed through.")
    qtbot.keyClicks(panel.system_prompt, pirate)
    temperature = panel.form.spins["temperature"]
    temperature.setValue(0.7)
    max_tokens = panel.form.spins["max_tokens"]
    max_tokens.setValue(12)
    with_prompt = ui.send_and_wait(win, "Hello!")
    # The system prompt reached the model: the same question is a longer prompt now (longer than the
    # default one SmolLM2's template adds when a chat has none).
    assert with_prompt["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 10
    assert with_prompt["usage"]["completion_tokens"] <= 12
    pirate_id = chat.conv.id
    win.persistence.background.drain()
    saved = ChatStore(tmp_path / "chats.db").get_conversation(pirate_id)
    assert saved.system_prompt.startswith("You are a pirate") and saved.params == {"temperature": 0.7,
                                                                                     "max_tokens": 12}

    qtbot.keyClick(chat.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # a new chat: the defaults
    assert panel.system_prompt_text() == "" and temperature.value() == 0.0 and max_tokens.value() == 8
    chat.open_conversation(pirate_id)
    qtbot.waitUntil(lambda: panel.system_prompt_text().startswith("You are a pirate"), timeout=5_000)
    assert temperature.value() == 0.7 and max_tokens.value() == 12


def test_ctrl_k_picks_a_model_and_unload_frees_it(qtbot, ui, open_window):
    win = open_window()
    qtbot.keyClick(win.chat.input, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    picker = win._picker
    assert picker is not None and picker.isVisible()
    with qtbot.waitSignal(win.engine.unloaded, timeout=10_000):
        qtbot.mouseClick(picker.unload_button, Qt.MouseButton.LeftButton)
    assert not win.chat.send_button.isEnabled() and win.model_button.text() == "No model loaded"
    assert win.model_status.text() == "No model" and not win.unload_button.isEnabled()
    qtbot.waitUntil(lambda: any("SmolLM2" in t for t in picker.row_texts()), timeout=10_000)
    with qtbot.waitSignal(win.engine.loaded, timeout=60_000):
        qtbot.keyClicks(picker.filter, "smol")
        qtbot.keyClick(picker.filter, Qt.Key.Key_Return)
    assert not picker.isVisible() and win.chat.send_button.isEnabled() and "SmolLM2" in win.model_button.text()
    assert "Paris" in ui.send_and_wait(win, "What is the capital of France? Answer in one word.")["text"]


def test_a_model_that_fails_to_load_is_reported_and_another_can_be_picked(qtbot, ui, open_window, tmp_path,
                                                                           bundled_ref):
    win = open_window()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    with qtbot.waitSignal(win.engine.load_failed, timeout=60_000):
        win.load_model(ref_for_path(broken))
    assert "Could not load the model" in win.chat.transcript_text()
    assert ui.links(win.chat.transcript, "note:retry-load")
    assert win.isVisible() and not win.chat.send_button.isEnabled()
    with qtbot.waitSignal(win.engine.loaded, timeout=60_000):
        win.load_model(bundled_ref)
    assert win.chat.send_button.isEnabled()


def test_settings_page_changes_the_theme_and_is_saved(qtbot, open_window):
    win = open_window()
    app = QApplication.instance()
    qtbot.mouseClick(win.nav.viewport(), Qt.MouseButton.LeftButton,
                     pos=win.nav.visualItemRect(win.nav.item(win.nav_row(win.settings_page))).center())
    assert win.pages.currentWidget() is win.settings_page
    combo = win.settings_page.findChild(type(win.settings_page.theme_combo), "themeCombo")
    try:
        combo.setCurrentIndex(combo.findData("dark"))
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert win.chat.transcript._dark
        win.persistence.background.drain()
        assert json.loads(settings_path().read_text())["theme"] == "dark"
    finally:
        combo.setCurrentIndex(combo.findData("light"))
        win.persistence.background.drain()
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 180


def test_opening_a_chat_loads_the_model_it_was_made_with(qtbot, ui, open_window, tmp_path, bundled_ref,
                                                         monkeypatch):
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))  # the import stays in this test
    copy = tmp_path / "SmolLM2-copy.gguf"
    shutil.copyfile(bundled_ref.path, copy)
    other = import_model(copy)
    assert other.id != bundled_ref.id
    store = ChatStore(tmp_path / "chats.db")
    conv = store.create_conversation("Made with the copy", model_id=other.id)
    store.add_message(conv.id, "user", "Hello from the copy", None)
    win = open_window()
    with qtbot.waitSignal(win.engine.loaded, timeout=60_000) as loaded:
        win.chat.open_conversation(conv.id)
    assert loaded.args[0]["model"]["id"] == other.id
    assert "SmolLM2-copy" in win.model_button.text() or other.name in win.model_button.text()
    done = ui.send_and_wait(win, "Hi!")
    assert done["finish_reason"] in ("stop", "length")
    win.persistence.background.drain()
    assert store.current_path(conv.id)[-1].meta["model_id"] == other.id
