"""The chat sidebar, driven like a user drives it (offscreen Qt): rows, rename, delete + undo, search, menu."""

from __future__ import annotations

from datetime import datetime

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from desktop_llm.core.conversation import Conversation
from desktop_llm.core.store import SearchHit
from desktop_llm.gui import conversation_list
from desktop_llm.gui.conversation_list import ConversationList

NOW = datetime(2025, 3, 20, 15, 0).timestamp()
HOUR, DAY = 3600, 86400


def conv(cid: str, title: str, ago: float, pinned: bool = False) -> Conversation:
    return Conversation(id=cid, title=title, created_at=NOW - ago - 60, updated_at=NOW - ago, pinned=pinned)


CHATS = [
    conv("lisbon", "Trip to Lisbon", 3 * DAY, pinned=True),
    conv("now", "Just started", 10),
    conv("regex", "Regex for dates", 5 * 60),
    conv("sql", "Fix my SQL query", DAY + HOUR),
    conv("lora", "Explain LoRA", 3 * DAY),
    conv("gift", "Birthday gift", 17 * DAY),
]


@pytest.fixture()
def sidebar(qtbot):
    w = ConversationList(clock=lambda: NOW)
    qtbot.addWidget(w)
    w.resize(280, 600)
    w.show()
    qtbot.waitExposed(w)
    w.set_conversations(CHATS)
    return w


def shown(w: ConversationList) -> list[str]:
    """The visible rows as a user reads them: headers, chat rows (marker, title, time), hits, notes."""
    rows = []
    for row in range(w.list.count()):
        item = w.list.item(row)
        if not item.isHidden():
            rows.append(item.data(Qt.ItemDataRole.AccessibleTextRole) or item.text())
    return rows


def row_of(w: ConversationList, title: str):
    return next(w.list.item(r) for r in range(w.list.count()) if w.list.item(r).text() == title)


def click(qtbot, w: ConversationList, title: str) -> None:
    qtbot.mouseClick(w.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=w.list.visualItemRect(row_of(w, title)).center())


def no_emission(signal):
    got = []
    signal.connect(lambda *args: got.append(args))
    return got


def test_rows_in_given_order_with_pin_marker_times_and_groups(sidebar):
    assert shown(sidebar) == [
        "Pinned", "★ Trip to Lisbon, 3 days ago",
        "Today", "Just started, just now", "Regex for dates, 5 min ago",
        "Yesterday", "Fix my SQL query, yesterday",
        "Previous 7 days", "Explain LoRA, 3 days ago",
        "Older", "Birthday gift, 3 Mar",
    ]
    for name in ("conversationSearch", "newChatButton", "importButton", "conversationList"):
        assert sidebar.findChild(object, name) is not None
    assert sidebar.findChild(QLineEdit, "conversationSearch").placeholderText() == "Search all chats (Ctrl+F)"


def test_no_pinned_group_without_pins_and_an_empty_list_says_so(sidebar):
    sidebar.set_conversations(CHATS[1:3])
    assert shown(sidebar) == ["Today", "Just started, just now", "Regex for dates, 5 min ago"]
    sidebar.set_conversations([])
    assert shown(sidebar) == ["No chats yet."]


def test_click_or_enter_opens_a_chat_and_headers_do_nothing(qtbot, sidebar):
    with qtbot.waitSignal(sidebar.open_requested) as opened:
        click(qtbot, sidebar, "Fix my SQL query")
    assert opened.args == ["sql"]
    assert sidebar.list.currentItem().text() == "Fix my SQL query"

    got = no_emission(sidebar.open_requested)
    click(qtbot, sidebar, "Yesterday")
    assert got == [] and sidebar.list.currentItem().text() == "Fix my SQL query"
    qtbot.mouseClick(sidebar.list.viewport(), Qt.MouseButton.RightButton,  # right click is for the menu
                     pos=sidebar.list.visualItemRect(row_of(sidebar, "Fix my SQL query")).center())
    assert got == []

    qtbot.keyClick(sidebar.list, Qt.Key.Key_Down)  # skips the "Previous 7 days" header
    with qtbot.waitSignal(sidebar.open_requested) as opened:
        qtbot.keyClick(sidebar.list, Qt.Key.Key_Return)
    assert opened.args == ["lora"]


def test_select_highlights_without_opening_and_survives_a_refresh(sidebar):
    got = no_emission(sidebar.open_requested)
    sidebar.select("regex")
    assert [i.text() for i in sidebar.list.selectedItems()] == ["Regex for dates"]
    sidebar.set_conversations(list(reversed(CHATS)))
    assert [i.text() for i in sidebar.list.selectedItems()] == ["Regex for dates"]
    sidebar.select(None)
    assert sidebar.list.selectedItems() == [] and got == []


def start_rename(qtbot, w: ConversationList, title: str) -> QLineEdit:
    click(qtbot, w, title)
    qtbot.keyClick(w.list, Qt.Key.Key_F2)
    editor = w.list.findChild(QLineEdit, "renameEdit")
    assert editor is not None and editor.isVisible() and editor.text() == title
    return editor


def test_f2_renames_in_place(qtbot, sidebar):
    editor = start_rename(qtbot, sidebar, "Explain LoRA")
    qtbot.keyClicks(editor, "  LoRA,  explained ")  # the old title is selected: typing replaces it
    with qtbot.waitSignal(sidebar.rename_requested) as renamed:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert renamed.args == ["lora", "LoRA, explained"]
    assert "LoRA, explained, 3 days ago" in shown(sidebar)


def test_escape_cancels_and_an_empty_title_is_refused(qtbot, sidebar):
    got = no_emission(sidebar.rename_requested)
    editor = start_rename(qtbot, sidebar, "Explain LoRA")
    qtbot.keyClicks(editor, "Something else")
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: sidebar.list.findChild(QLineEdit, "renameEdit") is None)

    editor = start_rename(qtbot, sidebar, "Explain LoRA")
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)
    qtbot.keyClicks(editor, "   ")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.wait(50)
    assert got == []
    assert "Explain LoRA, 3 days ago" in shown(sidebar)


def test_a_refresh_during_a_rename_keeps_what_is_typed(qtbot, sidebar):
    editor = start_rename(qtbot, sidebar, "Explain LoRA")
    qtbot.keyClicks(editor, "Adapters")
    sidebar.set_conversations([*CHATS, conv("new", "Arrived meanwhile", 30)])  # e.g. a reply finished
    assert editor.isVisible() and editor.text() == "Adapters"
    with qtbot.waitSignal(sidebar.rename_requested) as renamed:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert renamed.args == ["lora", "Adapters"]
    qtbot.waitUntil(lambda: "Arrived meanwhile, just now" in shown(sidebar))


def test_delete_key_then_undo(qtbot, sidebar, monkeypatch):
    click(qtbot, sidebar, "Fix my SQL query")
    with qtbot.waitSignal(sidebar.delete_requested) as deleted:
        qtbot.keyClick(sidebar.list, Qt.Key.Key_Delete)
    assert deleted.args == ["sql"]
    assert "Fix my SQL query, yesterday" not in shown(sidebar)
    assert "Yesterday" not in shown(sidebar)  # its group is empty now

    sidebar.show_deleted("sql", "Fix my SQL query")
    assert sidebar.undo_bar.isVisible() and sidebar.undo_bar.objectName() == "undoBar"
    assert sidebar.undo_label.text() == "Deleted “Fix my SQL query”."
    with qtbot.waitSignal(sidebar.undo_delete_requested) as undone:
        qtbot.mouseClick(sidebar.findChild(object, "undoButton"), Qt.MouseButton.LeftButton)
    assert undone.args == ["sql"]
    assert not sidebar.undo_bar.isVisible()
    assert "Fix my SQL query, yesterday" in shown(sidebar)


def test_the_undo_offer_goes_away_and_a_newer_deletion_replaces_it(qtbot, monkeypatch):
    monkeypatch.setattr(conversation_list, "UNDO_SECONDS", 0.3)
    w = ConversationList(clock=lambda: NOW)
    qtbot.addWidget(w)
    w.show()
    w.set_conversations(CHATS)
    w.show_deleted("sql", "Fix my SQL query")
    w.show_deleted("gift", "Birthday gift")
    assert w.undo_label.text() == "Deleted “Birthday gift”."
    with qtbot.waitSignal(w.undo_delete_requested) as undone:
        w.undo_button.click()
    assert undone.args == ["gift"]
    w.show_deleted("lora", "Explain LoRA")
    qtbot.waitUntil(lambda: not w.undo_bar.isVisible(), timeout=3000)


def test_typing_a_search_emits_once_per_burst(qtbot, sidebar):
    queries = no_emission(sidebar.search_changed)
    with qtbot.waitSignal(sidebar.search_changed, timeout=2000):
        qtbot.keyClicks(sidebar.search, "lisbon")
    qtbot.wait(300)
    assert queries == [("lisbon",)]


def test_hits_replace_the_list_and_stale_answers_are_ignored(qtbot, sidebar):
    qtbot.keyClicks(sidebar.search, "lisbon  trip")
    assert sidebar.search_text() == "lisbon  trip"
    hit = SearchHit("lisbon", "Trip to Lisbon", "m7", "assistant", "In [Lisbon],\n  start with the [trip] to Alfama")
    sidebar.set_hits("lisbon", [SearchHit("lora", "Explain LoRA", "m1", "user", "[lisbon]")])  # stale
    assert "Explain LoRA" not in shown(sidebar) and "Trip to Lisbon" not in shown(sidebar)
    sidebar.set_hits("lisbon  trip", [hit])
    assert shown(sidebar) == ["Trip to Lisbon"]
    assert "In Lisbon," in row_of(sidebar, "Trip to Lisbon").toolTip()

    got = no_emission(sidebar.open_requested)
    with qtbot.waitSignal(sidebar.hit_requested) as picked:
        click(qtbot, sidebar, "Trip to Lisbon")
    assert picked.args == ["m7", ["lisbon", "trip"]] and got == []

    sidebar.set_hits("lisbon  trip", [])
    assert shown(sidebar) == ["No message matches."]


def test_chats_arriving_during_a_search_wait_until_it_is_cleared(qtbot, sidebar):
    qtbot.keyClicks(sidebar.search, "zzz")
    sidebar.set_hits("zzz", [])
    sidebar.set_conversations(CHATS[:2])
    assert shown(sidebar) == ["No message matches."]
    with qtbot.waitSignal(sidebar.search_changed) as changed:
        qtbot.keyClick(sidebar.search, Qt.Key.Key_Escape)
    assert changed.args == [""] and sidebar.search.text() == ""
    assert shown(sidebar) == ["Pinned", "★ Trip to Lisbon, 3 days ago", "Today", "Just started, just now"]


def test_focus_search_selects_the_query(qtbot, sidebar):
    sidebar.search.setText("old query")
    sidebar.list.setFocus()
    sidebar.focus_search()
    assert sidebar.search.hasFocus() and sidebar.search.selectedText() == "old query"


def test_context_menu_pins_and_unpins(qtbot, sidebar):
    menu = sidebar.context_menu_for("regex")
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == [
        "Rename", "Pin", "Export as Markdown…", "Export as JSON…", "Delete"]
    with qtbot.waitSignal(sidebar.pin_requested) as pinned:
        next(a for a in menu.actions() if a.text() == "Pin").trigger()
    assert pinned.args == ["regex", True]
    menu = sidebar.context_menu_for("lisbon")
    with qtbot.waitSignal(sidebar.pin_requested) as unpinned:
        next(a for a in menu.actions() if a.text() == "Unpin").trigger()
    assert unpinned.args == ["lisbon", False]


def test_menu_key_opens_the_menu_of_the_current_chat(qtbot, sidebar, monkeypatch):
    opened = []
    monkeypatch.setattr(sidebar, "_exec_menu", lambda menu, where: opened.append([a.text() for a in menu.actions()]))
    click(qtbot, sidebar, "Trip to Lisbon")
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Menu)
    assert len(opened) == 1 and "Unpin" in opened[0]


def test_export_asks_where_with_a_safe_default_name(qtbot, sidebar, monkeypatch, tmp_path):
    asked = []

    def ask(default_name, fmt):
        asked.append((default_name, fmt))
        return str(tmp_path / "lisbon")  # typed without an extension

    monkeypatch.setattr(sidebar, "_ask_save_path", ask)
    sidebar.set_conversations([conv("x", "Trip to Lisbon: day 1/2?", 60)])
    with qtbot.waitSignal(sidebar.export_requested) as exported:
        next(a for a in sidebar.context_menu_for("x").actions() if a.text() == "Export as Markdown…").trigger()
    assert asked == [("Trip_to_Lisbon_day_1_2.md", "markdown")]
    assert exported.args == ["x", "markdown", str(tmp_path / "lisbon.md")]

    monkeypatch.setattr(sidebar, "_ask_save_path", lambda name, fmt: None)  # the user cancels
    got = no_emission(sidebar.export_requested)
    next(a for a in sidebar.context_menu_for("x").actions() if a.text() == "Export as JSON…").trigger()
    assert got == []


def test_new_chat_and_import_buttons(qtbot, sidebar, monkeypatch, tmp_path):
    with qtbot.waitSignal(sidebar.new_requested):
        qtbot.mouseClick(sidebar.new_button, Qt.MouseButton.LeftButton)
    monkeypatch.setattr(sidebar, "_ask_open_path", lambda: str(tmp_path / "chat.json"))
    with qtbot.waitSignal(sidebar.import_requested) as imported:
        qtbot.mouseClick(sidebar.import_button, Qt.MouseButton.LeftButton)
    assert imported.args == [str(tmp_path / "chat.json")]


def test_a_thousand_chats_load(qtbot, sidebar):
    many = [conv(f"c{i}", f"Chat number {i}", i * HOUR, pinned=i < 3) for i in range(1000)]
    sidebar.set_conversations(many)
    titles = [r.split(",")[0] for r in shown(sidebar) if "," in r]
    assert len(titles) == 1000 and titles[0] == "★ Chat number 0" and titles[-1] == "Chat number 999"
    sidebar.list.scrollToBottom()
    with qtbot.waitSignal(sidebar.open_requested) as opened:
        click(qtbot, sidebar, "Chat number 999")
    assert opened.args == ["c999"]
