"""Chats in the window are saved as they happen and come back in a new window (real store, real engine)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.store import ChatStore
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.chat_window import ChatWindow
from desktop_llm.gui.engine_bridge import QtEngine


@pytest.fixture()
def open_window(qtbot, bundled_ref, tmp_path):
    opened = []

    def make(params: SamplingParams) -> ChatWindow:
        engine = QtEngine(EngineClient())
        win = ChatWindow(engine, params, ChatPersistence(ChatStore(tmp_path / "chats.db"), Background()))
        qtbot.addWidget(win)
        win.show()
        with qtbot.waitSignal(engine.loaded, timeout=60_000):
            engine.load(bundled_ref)
        opened.append(win)
        return win

    yield make
    for win in opened:
        win.close()


def send(qtbot, win, text):
    qtbot.keyClicks(win.input, text)
    qtbot.keyClick(win.input, Qt.Key.Key_Return)


def test_reply_is_written_while_streaming_and_kept_across_windows(qtbot, open_window, tmp_path):
    win = open_window(SamplingParams(seed=1, max_tokens=400, repeat_penalty=1.3))
    reader = ChatStore(tmp_path / "chats.db")  # a second connection, as another process would see it
    tokens = []
    win.engine.token.connect(lambda ev: tokens.append(ev["text"]))
    with qtbot.waitSignal(win.engine.finished, timeout=120_000):
        send(qtbot, win, "Tell me a very long story about a lighthouse keeper.")
        qtbot.waitUntil(lambda: len(reader.list_conversations()) == 1, timeout=10_000)
        conv_id = reader.list_conversations()[0].id

        def saved_mid_reply() -> bool:
            path = reader.current_path(conv_id)  # empty for a moment: the chat is written before its messages
            return len(path) == 2 and path[-1].status == "streaming" and len(path[-1].content) > 20

        qtbot.waitUntil(saved_mid_reply, timeout=30_000)  # written before the reply ended
    win.persistence.background.drain()
    user, reply = reader.current_path(conv_id)
    assert user.content == "Tell me a very long story about a lighthouse keeper."
    assert reply.status == "complete" and reply.content == "".join(tokens)
    assert reply.meta["tokens_per_second"] > 0 and reply.meta["model_id"] == "bundled:SmolLM2-135M-Instruct"
    qtbot.waitUntil(lambda: win.conversations.count() == 1, timeout=5_000)
    assert win.conversations.item(0).text().startswith("Tell me a very long story")
    win.close()

    again = open_window(SamplingParams(temperature=0, max_tokens=30))
    qtbot.waitUntil(lambda: again.conversations.count() == 1, timeout=5_000)
    item = again.conversations.item(0)
    again.conversations.itemClicked.emit(item)
    qtbot.waitUntil(lambda: "lighthouse keeper" in again.transcript_text(), timeout=5_000)
    assert reply.content[:40] in again.transcript_text()
    with qtbot.waitSignal(again.engine.finished, timeout=60_000):
        send(qtbot, again, "Give the story a title.")
    again.persistence.background.drain()
    path = reader.current_path(conv_id)
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert path[2].content == "Give the story a title." and path[3].status == "complete"
    assert again.history[:2] == [{"role": "user", "content": user.content},
                                 {"role": "assistant", "content": reply.content}]


def test_new_chat_starts_a_second_conversation(qtbot, open_window, tmp_path):
    win = open_window(SamplingParams(temperature=0, max_tokens=8))
    for question in ("First question?", "Second question?"):
        with qtbot.waitSignal(win.engine.finished, timeout=60_000):
            send(qtbot, win, question)
        qtbot.keyClick(win.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # focus is in the box
    win.persistence.background.drain()
    titles = [c.title for c in ChatStore(tmp_path / "chats.db").list_conversations()]
    assert titles == ["Second question?", "First question?"]
    qtbot.waitUntil(lambda: win.conversations.count() == 2, timeout=5_000)


def test_search_finds_a_message_in_another_chat_and_jumps_to_it(qtbot, open_window, tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    other = store.create_conversation("Garden notes")
    q = store.add_message(other.id, "user", "When should I plant tulip bulbs?", None)
    store.add_message(other.id, "assistant", "Plant tulips in autumn, before the ground freezes.", q.id)
    win = open_window(SamplingParams(temperature=0, max_tokens=8))
    with qtbot.waitSignal(win.engine.finished, timeout=60_000):
        send(qtbot, win, "Hello there")
    qtbot.keyClick(win.input, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert win.search_edit.hasFocus()
    qtbot.keyClicks(win.search_edit, "tulip")
    qtbot.waitUntil(lambda: win.conversations.count() == 2 and "Garden notes" in win.conversations.item(0).text(),
                    timeout=5_000)
    assert "[tulip]" in win.conversations.item(0).text() or "[tulips]" in win.conversations.item(0).text()
    win.conversations.itemClicked.emit(win.conversations.item(0))
    qtbot.waitUntil(lambda: "before the ground freezes" in win.transcript_text(), timeout=5_000)
    assert win.transcript.textCursor().selectedText().lower() == "tulip"  # the hit is selected and in view
    assert "Hello there" not in win.transcript_text()
    qtbot.keyClicks(win.search_edit, "zzzz")
    qtbot.waitUntil(lambda: win.conversations.item(0).text() == "No message matches.", timeout=5_000)
    win.search_edit.clear()
    qtbot.waitUntil(lambda: win.conversations.count() == 2 and win.conversations.item(0).data(
        Qt.ItemDataRole.UserRole + 1) is None, timeout=5_000)  # back to the list of chats
