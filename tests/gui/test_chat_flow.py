"""Chatting in the main window: stream, stop, regenerate, edit and branch, fork, crash and retry."""

from __future__ import annotations

import os
import re
import signal

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from desktop_llm.core.store import ChatStore


def test_send_a_message_and_see_the_reply_stream_in(qtbot, ui, open_window, tmp_path):
    win = open_window()
    chat = win.chat
    tokens = []
    win.engine.token.connect(lambda ev: tokens.append(ev["text"]))
    qtbot.keyClicks(chat.input, "first line")
    qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)  # a new line, not a send
    assert chat.input.toPlainText() == "first line\n" and chat.path == []
    chat.input.clear()
    seen_live = []
    win.engine.token.connect(lambda _ev: seen_live.append(chat.transcript.live_text()))
    with qtbot.waitSignal(chat.reply_done, timeout=60_000) as done:
        ui.send(win, "What is the capital of France? Answer in one word.")
        assert chat.stop_button.isEnabled() and not chat.send_button.isEnabled()
    reply = "".join(tokens)
    assert len(tokens) > 1 and "Paris" in reply
    assert any(0 < len(text) < len(reply) for text in seen_live)  # it was shown growing, token by token
    assert reply.strip() in chat.transcript_text()
    assert chat.input.toPlainText() == "" and chat.send_button.isEnabled()
    # The status bar and the gauge report the reply.
    assert "tokens/s" in win.reply_stats.text() and "first token" in win.reply_stats.text()
    used = done.args[0]["usage"]["prompt_tokens"] + done.args[0]["usage"]["completion_tokens"]
    assert f"{used:,} / 4,096" in chat.context_label.text() and f"{used:,} / 4,096" in win.context_status.text()
    assert "SmolLM2" in win.model_status.text() and "llamacpp on cpu" in win.model_status.text()
    assert win.engine_state.text() == "Engine: ready"
    win.persistence.background.drain()
    (conv,) = ChatStore(tmp_path / "chats.db").list_conversations()
    assert conv.title.startswith("What is the capital of France")


def test_stop_keeps_the_partial_reply(qtbot, ui, open_window, tmp_path):
    win = open_window({"max_tokens": 400, "seed": 5})
    got = []
    win.engine.token.connect(lambda ev: got.append(ev["text"]))
    with qtbot.waitSignal(win.chat.reply_done, timeout=60_000) as done:
        ui.send(win, "Tell me a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(got) >= 5, timeout=30_000)
        qtbot.keyClick(win.chat.input, Qt.Key.Key_Escape)
    assert done.args[0]["finish_reason"] == "cancelled"
    assert "(stopped)" in win.chat.transcript_text()
    win.persistence.background.drain()
    store = ChatStore(tmp_path / "chats.db")
    reply = store.current_path(store.list_conversations()[0].id)[-1]
    assert reply.status == "stopped" and reply.content == "".join(got) and 5 <= len(got) < 400


def _shown(text: str) -> str:
    """Text as the rendered view reads it: list markers, Markdown emphasis and code marks gone, spaces collapsed
    (sampled at temperature 1.5, a reply may hold any of them)."""
    lines = [re.sub(r"^\s*(\d+[.)]|[-+*])\s+", "", line) for line in text.splitlines()]
    return " ".join(re.sub(r"[*_`#>~]", "", " ".join(lines)).split())


def test_regenerate_keeps_versions_and_arrows_switch_between_them(qtbot, ui, open_window, tmp_path):
    win = open_window({"temperature": 1.5, "max_tokens": 24})
    view = win.chat.transcript
    ui.send_and_wait(win, "Name an animal.")
    first = win.chat.path[-1].content
    with qtbot.waitSignal(win.chat.reply_done, timeout=60_000):
        ui.click_link(view, "msg:regenerate:")
    second = win.chat.path[-1].content
    assert first.strip() != second.strip()
    # Compare by a line only one version has: the rest is rendered Markdown (a trailing "1." is an
    # empty list item and shows no text), so whole replies are not substrings of the view.
    only_first = next(line.strip() for line in first.splitlines() if line.strip() and line.strip() not in second)
    only_second = next(line.strip() for line in second.splitlines()
                       if line.strip() and line.strip() not in first)
    only_first, only_second = _shown(only_first), _shown(only_second)
    assert len(win.chat.path) == 2 and "2/2" in view.plain_text()
    assert only_second in _shown(view.plain_text()) and only_first not in _shown(view.plain_text())

    ui.click_link(view, "msg:prev:")
    qtbot.waitUntil(lambda: "1/2" in view.plain_text(), timeout=5_000)
    assert only_first in _shown(view.plain_text()) and only_second not in _shown(view.plain_text())
    ui.click_link(view, "msg:next:")
    qtbot.waitUntil(lambda: "2/2" in view.plain_text(), timeout=5_000)
    assert only_second in _shown(view.plain_text())
    win.persistence.background.drain()
    store = ChatStore(tmp_path / "chats.db")
    assert [m.content for m in store.siblings(win.chat.path[-1].id)] == [first, second]


def test_edit_an_earlier_message_makes_a_branch_and_both_can_be_shown(qtbot, ui, open_window, tmp_path):
    win = open_window()
    chat, view = win.chat, win.chat.transcript
    ui.send_and_wait(win, "What is the capital of France?")
    ui.send_and_wait(win, "And of Italy?")
    old_branch = [m.content for m in chat.path]

    ui.click_link(view, "msg:edit:", 0)  # the first question
    assert chat.input.toPlainText() == "What is the capital of France?" and chat.edit_banner.isVisible()
    chat.input.selectAll()
    with qtbot.waitSignal(chat.reply_done, timeout=60_000):
        ui.send(win, "What is the capital of Germany?")
    assert not chat.edit_banner.isVisible()
    assert [m.role for m in chat.path] == ["user", "assistant"]
    assert "Berlin" in chat.path[-1].content
    assert "And of Italy?" not in view.plain_text() and "1/2" not in view.plain_text() and "2/2" in view.plain_text()

    ui.click_link(view, "msg:prev:")  # back to the original question: its whole branch returns
    qtbot.waitUntil(lambda: [m.content for m in chat.path] == old_branch, timeout=5_000)
    assert "And of Italy?" in view.plain_text() and "1/2" in view.plain_text()
    ui.click_link(view, "msg:next:")
    qtbot.waitUntil(lambda: chat.path[0].content == "What is the capital of Germany?", timeout=5_000)
    win.persistence.background.drain()
    store = ChatStore(tmp_path / "chats.db")
    assert len(store.all_messages(chat.conv.id)) == 6  # nothing was deleted


def test_fork_from_a_message_starts_a_new_chat_with_the_path_up_to_it(qtbot, ui, open_window, tmp_path):
    win = open_window()
    ui.send_and_wait(win, "What is the capital of France?")
    ui.send_and_wait(win, "And of Italy?")
    original = win.chat.conv.id
    ui.click_link(win.chat.transcript, "msg:fork:", 1)  # the first reply
    qtbot.waitUntil(lambda: win.chat.conv.id != original, timeout=5_000)
    assert [m.role for m in win.chat.path] == ["user", "assistant"]
    assert "And of Italy?" not in win.chat.transcript_text()
    win.persistence.background.drain()
    store = ChatStore(tmp_path / "chats.db")
    assert len(store.list_conversations()) == 2 and len(store.current_path(original)) == 4


def test_copy_buttons_copy_a_code_block_and_a_whole_message(qtbot, ui, open_window, tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    conv = store.create_conversation("Code")
    q = store.add_message(conv.id, "user", "Show me a loop.", None)
    code = "for i in range(3):\n    print(i)"
    answer = f"Here you go:\n\n```python\n{code}\n```\n\nIt prints **0 to 2**."
    store.add_message(conv.id, "assistant", answer, q.id)
    win = open_window()
    win.chat.open_conversation(conv.id)
    view = win.chat.transcript
    qtbot.waitUntil(lambda: "Here you go" in view.plain_text(), timeout=5_000)
    assert "**" not in view.plain_text()  # Markdown is rendered, not shown raw
    ui.click_link(view, "copy-code:")
    assert QGuiApplication.clipboard().text() == code
    ui.click_link(view, "msg:copy:", 1)
    assert QGuiApplication.clipboard().text() == answer


def test_engine_killed_mid_reply_shows_an_error_with_retry_and_the_chat_goes_on(qtbot, ui, open_window):
    win = open_window({"max_tokens": 400, "seed": 2})
    chat = win.chat
    states = []
    win.engine.state_changed.connect(states.append)
    got = []
    win.engine.token.connect(got.append)
    with qtbot.waitSignal(win.engine.failed, timeout=60_000) as failed:
        ui.send(win, "Tell me a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(got) >= 3, timeout=30_000)
        os.kill(win.engine.client.pid, signal.SIGKILL)
    assert "engine stopped unexpectedly" in failed.args[0]
    assert "engine stopped unexpectedly" in chat.transcript_text()
    assert ui.links(chat.transcript, "msg:retry:")  # the error offers a retry
    assert win.isVisible() and chat.send_button.isEnabled()
    qtbot.waitUntil(lambda: "restarting" in states and win.engine_state.text() == "Engine: ready", timeout=60_000)
    assert "crashed" in states

    win.chat.conv.params = {"max_tokens": 20, "temperature": 0.0}
    with qtbot.waitSignal(chat.reply_done, timeout=60_000):
        ui.click_link(chat.transcript, "msg:retry:")
    assert chat.path[-1].status == "complete" and chat.path[-1].content
    assert "2/2" in chat.transcript_text()  # the failed try is kept as version 1
    done = ui.send_and_wait(win, "What is the capital of France?")
    assert done["finish_reason"] in ("stop", "length") and "Paris" in chat.path[-1].content
