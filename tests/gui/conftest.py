"""The main window on the real engine, the bundled model and a real chat store, driven like a user."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextCursor

from desktop_llm.core.settings import Settings
from desktop_llm.core.store import ChatStore
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.main_window import MainWindow

# Greedy and short unless a test says otherwise: replies are quick and the same each run.
QUICK = {"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 40}


@pytest.fixture()
def open_window(qtbot, bundled_ref, tmp_path):
    """Opens a main window over ``tmp_path/chats.db`` with the bundled model loaded."""
    opened = []

    def make(sampling: dict | None = None, **settings_fields) -> MainWindow:
        settings = Settings(sampling=dict(QUICK if sampling is None else sampling), **settings_fields)
        engine = QtEngine(EngineClient(cancel_grace=5.0))
        persistence = ChatPersistence(ChatStore(tmp_path / "chats.db"), Background())
        win = MainWindow(engine, persistence, settings)
        qtbot.addWidget(win)
        win.show()
        with qtbot.waitSignal(engine.loaded, timeout=60_000):
            win.load_default_model()
        qtbot.waitUntil(lambda: win.chat.send_button.isEnabled(), timeout=5_000)
        opened.append(win)
        return win

    yield make
    for win in opened:
        if win.isVisible():
            win.close()
        else:  # closed by the test already, or never shown: stop what closing would have stopped
            win.hub.shutdown()
            win.engine.shutdown()


def send(qtbot, win: MainWindow, text: str) -> None:
    box = win.chat.input
    box.setFocus()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def send_and_wait(qtbot, win: MainWindow, text: str, timeout: int = 60_000) -> dict:
    with qtbot.waitSignal(win.chat.reply_done, timeout=timeout) as done:
        send(qtbot, win, text)
    return done.args[0]


def link_positions(view, href_prefix: str) -> list[tuple[str, int]]:
    """(href, document position) of every link whose target starts with ``href_prefix``."""
    found = []
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            href = frag.charFormat().anchorHref()
            if href.startswith(href_prefix):
                found.append((href, frag.position() + max(0, frag.length() // 2)))
            it += 1
        block = block.next()
    return found


def click_link(qtbot, view, href_prefix: str, index: int = 0) -> str:
    """Click the link as a user would: scroll it into view and press the mouse on it."""
    links = link_positions(view, href_prefix)
    assert links, f"no link starting with {href_prefix!r} in the transcript"
    href, position = links[index]
    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    view.setTextCursor(cursor)
    view.ensureCursorVisible()
    rect = view.cursorRect(cursor)
    point = QPoint(rect.center().x(), rect.center().y())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)
    return href


@pytest.fixture()
def ui(qtbot):
    """What a user does in the window: ``ui.send(win, text)``, ``ui.send_and_wait``, ``ui.click_link``."""
    return SimpleNamespace(
        send=lambda win, text: send(qtbot, win, text),
        send_and_wait=lambda win, text, timeout=60_000: send_and_wait(qtbot, win, text, timeout),
        click_link=lambda view, prefix, index=0: click_link(qtbot, view, prefix, index),
        links=link_positions,
    )
