"""Saved chats in the main window: written while streaming, reopened, searched, organised, exported."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from desktop_llm.core.store import ChatStore

CONV_ID = Qt.ItemDataRole.UserRole + 1  # where the sidebar keeps a row's conversation id


def listed_ids(sidebar) -> list[str]:
    """The chats in the sidebar, top to bottom (group headers left out)."""
    items = [sidebar.list.item(r) for r in range(sidebar.list.count())]
    return [i.data(CONV_ID) for i in items if not i.isHidden() and i.data(CONV_ID)]


def click_row(qtbot, sidebar, text: str) -> None:
    item = next(sidebar.list.item(r) for r in range(sidebar.list.count()) if sidebar.list.item(r).text() == text)
    qtbot.mouseClick(sidebar.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=sidebar.list.visualItemRect(item).center())


def test_reply_is_written_while_streaming_and_comes_back_in_a_new_window(qtbot, ui, open_window, tmp_path):
    win = open_window({"seed": 1, "max_tokens": 400, "repeat_penalty": 1.3})
    reader = ChatStore(tmp_path / "chats.db")  # a second connection, as another process would see it
    tokens = []
    win.engine.token.connect(lambda ev: tokens.append(ev["text"]))
    with qtbot.waitSignal(win.chat.reply_done, timeout=120_000):
        ui.send(win, "Tell me a very long story about a lighthouse keeper.")
        qtbot.waitUntil(lambda: len(reader.list_conversations()) == 1, timeout=10_000)
        conv_id = reader.list_conversations()[0].id

        def saved_mid_reply() -> bool:
            path = reader.current_path(conv_id)  # empty for a moment: the chat is written before its messages
            return len(path) == 2 and path[-1].status == "streaming" and len(path[-1].content) > 20

        qtbot.waitUntil(saved_mid_reply, timeout=30_000)  # written before the reply ended
    win.persistence.background.drain()
    user, reply = reader.current_path(conv_id)
    assert reply.status == "complete" and reply.content == "".join(tokens)
    assert reply.meta["tokens_per_second"] > 0 and reply.meta["model_id"] == "bundled:SmolLM2-135M-Instruct"
    win.close()

    again = open_window({"temperature": 0.0, "max_tokens": 30})
    listed = again.chat.conversation_list
    qtbot.waitUntil(lambda: listed_ids(listed) == [conv_id], timeout=5_000)
    click_row(qtbot, listed, "Tell me a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: "lighthouse keeper" in again.chat.transcript_text(), timeout=5_000)
    ui.send_and_wait(again, "Give the story a title.")
    again.persistence.background.drain()
    path = reader.current_path(conv_id)
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    assert path[2].content == "Give the story a title." and path[3].status == "complete"


def test_search_finds_a_message_in_another_chat_and_jumps_to_it(qtbot, ui, open_window, tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    other = store.create_conversation("Garden notes")
    q = store.add_message(other.id, "user", "When should I plant tulip bulbs?", None)
    store.add_message(other.id, "assistant", "Plant tulips in autumn, before the ground freezes.", q.id)
    win = open_window({"temperature": 0.0, "max_tokens": 8})
    ui.send_and_wait(win, "Hello there")
    listed = win.chat.conversation_list
    qtbot.keyClick(win.chat.input, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert listed.search.hasFocus()
    with qtbot.waitSignal(listed.search_changed, timeout=5_000):
        qtbot.keyClicks(listed.search, "tulip")
    qtbot.waitUntil(lambda: listed.list.count() == 2, timeout=5_000)  # the question and the answer
    with qtbot.waitSignal(listed.hit_requested, timeout=5_000):
        click_row(qtbot, listed, "Garden notes")
    qtbot.waitUntil(lambda: "before the ground freezes" in win.chat.transcript_text(), timeout=5_000)
    assert win.chat.transcript.textCursor().selectedText().lower() == "tulip"  # the hit is selected, in view
    assert "Hello there" not in win.chat.transcript_text()


def test_export_then_import_gives_the_same_conversation(qtbot, ui, open_window, tmp_path):
    win = open_window({"temperature": 1.0, "max_tokens": 16, "seed": 4})
    ui.send_and_wait(win, "Name a colour.")
    with qtbot.waitSignal(win.chat.reply_done, timeout=60_000):
        ui.click_link(win.chat.transcript, "msg:regenerate:")
    ui.send_and_wait(win, "Why that one?")
    original = win.chat.conv.id
    json_path, md_path = tmp_path / "chat.json", tmp_path / "chat.md"
    win.chat.conversation_list.export_requested.emit(original, "json", str(json_path))
    win.chat.conversation_list.export_requested.emit(original, "markdown", str(md_path))
    win.persistence.background.drain()
    qtbot.waitUntil(lambda: md_path.exists(), timeout=5_000)
    assert "Why that one?" in md_path.read_text() and "Name a colour." in md_path.read_text()

    win.chat.conversation_list.import_requested.emit(str(json_path))
    qtbot.waitUntil(lambda: win.chat.conv.id != original, timeout=5_000)
    store = ChatStore(tmp_path / "chats.db")
    a, b = store.all_messages(original), store.all_messages(win.chat.conv.id)
    assert [(m.role, m.content, m.status) for m in a] == [(m.role, m.content, m.status) for m in b]
    assert [m.content for m in store.current_path(original)] == [m.content for m in win.chat.path]
    assert "2/2" in win.chat.transcript_text()  # the regenerated versions came along

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    before = len(store.list_conversations())
    win.chat.conversation_list.import_requested.emit(str(bad))
    qtbot.waitUntil(lambda: "Could not import" in win.chat.transcript_text(), timeout=5_000)
    assert len(store.list_conversations()) == before


def test_rename_pin_delete_and_undo(qtbot, ui, open_window, tmp_path):
    win = open_window({"temperature": 0.0, "max_tokens": 6})
    for question in ("First question?", "Second question?"):
        ui.send_and_wait(win, question)
        qtbot.keyClick(win.chat.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert win.chat.transcript_text().strip() == "" and win.chat.path == []
    win.persistence.background.drain()
    store = ChatStore(tmp_path / "chats.db")
    first, second = sorted(store.list_conversations(), key=lambda c: c.created_at)
    listed = win.chat.conversation_list
    qtbot.waitUntil(lambda: listed_ids(listed) == [second.id, first.id], timeout=5_000)

    listed.rename_requested.emit(first.id, "Renamed")
    listed.pin_requested.emit(first.id, True)
    qtbot.waitUntil(lambda: listed_ids(listed) == [first.id, second.id], timeout=5_000)  # pinned first
    win.persistence.background.drain()
    assert store.get_conversation(first.id).title == "Renamed" and store.get_conversation(first.id).pinned

    listed.delete_requested.emit(second.id)
    qtbot.waitUntil(lambda: listed_ids(listed) == [first.id] and listed.undo_bar.isVisible(),
                    timeout=5_000)
    listed.undo_button.click()
    qtbot.waitUntil(lambda: listed_ids(listed) == [first.id, second.id], timeout=5_000)
    win.persistence.background.drain()
    assert len(store.list_conversations()) == 2


def test_the_window_reopens_the_chat_with_the_newest_activity(qtbot, open_window, tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    for title in ("Older chat", "Newest chat"):
        conv = store.create_conversation(title)
        store.add_message(conv.id, "user", f"A question in {title.lower()}", None)
    win = open_window()
    win.chat.open_latest()
    qtbot.waitUntil(lambda: "A question in newest chat" in win.chat.transcript_text(), timeout=5_000)
    assert "Newest chat" in win.chat.title_label.text()
