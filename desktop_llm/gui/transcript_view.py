"""The chat transcript: messages as Markdown, with per-message actions and a live reply.

One QTextBrowser holds the whole branch, so text can be selected across messages. Actions are
links (``msg:<action>:<message id>``) in each message's header line; code blocks get a Copy link.

A streaming reply is never re-rendered whole per token: text is appended at the end, and each
time a top-level block is complete (a blank line, or a closed code fence) only that block is
rendered as Markdown in place of its raw text. When the reply ends the view is rendered once.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

from desktop_llm.core.conversation import Message
from desktop_llm.gui.markdown_html import render_markdown, stable_prefix_length

# Long conversations show their newest messages; a link at the top shows the rest.
SHOW_AT_ONCE = 120
_ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


@dataclass
class _Colors:
    user: str
    assistant: str
    muted: str
    error: str
    link: str


_LIGHT = _Colors("#2563eb", "#059669", "#6b7280", "#dc2626", "#4b5563")
_DARK = _Colors("#60a5fa", "#34d399", "#9ca3af", "#f87171", "#cbd5e1")


@dataclass
class _Note:
    text: str
    error: bool = False
    action: str | None = None  # an anchor the page handles, e.g. "note:retry-load"
    action_label: str = ""


class TranscriptView(QTextBrowser):
    message_action = Signal(str, str)  # action (edit, regenerate, fork, prev, next, retry), message id
    note_action = Signal(str)  # the note's action name
    copied = Signal(str)  # what was put on the clipboard, for the status bar

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("transcript")
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._on_anchor)
        self._messages: list[Message] = []
        self._versions: dict[str, tuple[int, int]] = {}
        self._notes: list[_Note] = []
        self._code: list[str] = []
        self._dark = False
        self._first_shown = 0
        self._model_names: dict[str, str] = {}
        # Rendered Markdown bodies by (id, content, dark, first Copy number): switching branches or themes is cheap.
        self._cache: OrderedDict[tuple[str, str, bool, int], tuple[str, list[str]]] = OrderedDict()
        # The live reply: its text, where its not-yet-rendered tail starts, and the text of that tail.
        self._live: Message | None = None
        self._live_text: list[str] = []
        self._tail_start = 0
        self._tail = ""
        self._cursor: QTextCursor | None = None  # at the end of the live reply

    # -- what is shown ----------------------------------------------------------------------------
    def set_dark(self, dark: bool) -> None:
        if dark != self._dark:
            self._dark = dark
            if self._live is None:
                self._render()

    def show_messages(self, messages: list[Message], versions: dict[str, tuple[int, int]],
                      focus_id: str | None = None, live: bool = False) -> None:
        """Show a branch. ``live``: the last message is a reply that is about to stream in."""
        self._messages = list(messages)
        self._versions = dict(versions)
        self._live = self._messages[-1] if live and self._messages else None
        self._live_text = []
        self._first_shown = max(0, len(self._messages) - SHOW_AT_ONCE)
        if focus_id is not None:
            index = next((i for i, m in enumerate(self._messages) if m.id == focus_id), None)
            if index is not None:
                self._first_shown = min(self._first_shown, index)
        self._render(keep_scroll=False)

    def add_note(self, text: str, error: bool = False, action: str | None = None, action_label: str = "") -> None:
        """A line under the conversation (e.g. a failed model load with Retry); kept until ``clear_notes``."""
        note = _Note(text, error, action, action_label)
        self._notes.append(note)
        if self._live is None:
            cursor = self._end_cursor()
            cursor.insertHtml(self._note_html(note))
            self._scroll_to_end()

    def clear_notes(self) -> None:
        if self._notes:
            self._notes = []
            if self._live is None:
                self._render()

    def set_model_names(self, names: dict[str, str]) -> None:
        """Model id -> display name, for the model a reply came from."""
        self._model_names = dict(names)

    def find_in_message(self, message_id: str, words: list[str]) -> bool:
        """Select the first searched word inside that message and scroll to it (a search hit)."""
        message = next((m for m in self._messages if m.id == message_id), None)
        if message is None or not words:
            return False
        word = words[0].lower().rstrip("*")
        line = next((ln.strip() for ln in message.content.splitlines() if word in ln.lower()), "")
        doc = self.document()
        # Find the message's line first, so the same word earlier in the chat is not the one selected.
        anchor = doc.find(line[:40]) if line else QTextCursor()
        start = anchor.selectionStart() if not anchor.isNull() else 0
        found = doc.find(word, start)
        if found.isNull():
            return False
        self.setTextCursor(found)
        self.ensureCursorVisible()
        return True

    def plain_text(self) -> str:
        return self.toPlainText()

    # -- the live reply ---------------------------------------------------------------------------
    def append_reply(self, text: str) -> None:
        if self._live is None or not text:
            return
        bar = self.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 4  # keep following only if the user has not scrolled up
        self._live_text.append(text)
        if self._cursor is None:
            self._cursor = self._end_cursor()
        self._cursor.insertText(text)  # the cursor stays at the end: no search for the end per token
        self._tail += text
        if "\n" in text:
            stable = stable_prefix_length(self._tail)
            if stable:
                self._commit(stable)
        if follow and bar.value() != bar.maximum():
            bar.setValue(bar.maximum())

    def live_text(self) -> str:
        return "".join(self._live_text)

    def end_reply(self, message: Message) -> None:
        """The reply is done (or stopped or failed): show it rendered, with its actions."""
        self._live = None
        self._live_text = []
        self._messages = [message if m.id == message.id else m for m in self._messages]
        self._render()

    def _commit(self, stable: int) -> None:
        """Render the complete blocks at the start of the tail in place of their raw text."""
        done, rest = self._tail[:stable], self._tail[stable:]
        rendered = render_markdown(done, dark=self._dark, block_id_start=len(self._code))
        self._code.extend(rendered.code_blocks)
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._tail_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        cursor.insertHtml(rendered.html)
        cursor = self._fresh_block()
        self._tail_start = cursor.position()
        self._tail = rest
        if rest:
            cursor.insertText(rest)
        self._cursor = cursor

    # -- rendering --------------------------------------------------------------------------------
    def _render(self, keep_scroll: bool = True) -> None:
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        previous = bar.value()
        self._code = []
        parts = []
        if self._first_shown > 0:
            parts.append(f'<p align="center"><a href="note:show-earlier">Show {self._first_shown:,} earlier '
                         f'message{"s" if self._first_shown != 1 else ""}</a></p>')
        for message in self._messages[self._first_shown:]:
            parts.append(self._message_html(message, live=message is self._live))
        if self._live is None:
            parts.extend(self._note_html(n) for n in self._notes)
        self.setHtml("".join(parts))
        self._cursor = None
        if self._live is not None:
            self._cursor = self._fresh_block()
            self._tail_start = self._cursor.position()
            self._tail = ""
        if keep_scroll and not at_end:
            bar.setValue(previous)
        else:
            self._scroll_to_end()

    def _message_html(self, message: Message, live: bool) -> str:
        c = _DARK if self._dark else _LIGHT
        color = c.user if message.role == "user" else c.assistant
        who = _ROLE_NAMES.get(message.role, message.role.title())
        header = [f'<b style="color:{color}">{who}</b>']
        model = self._model_names.get(message.meta.get("model_id", "")) if message.role == "assistant" else None
        if model:
            header.append(f'<span style="color:{c.muted}">&nbsp;· {html.escape(model)}</span>')
        if live:
            header.append(f'<span style="color:{c.muted}">&nbsp;&nbsp;writing…</span>')
        else:
            header.append("&nbsp;&nbsp;&nbsp;" + self._actions_html(message, c))
        out = [f'<p style="margin-top:16px; margin-bottom:4px">{"".join(header)}</p>']
        if live:
            return "".join(out)
        if message.role == "assistant":
            out.append(self._markdown(message))
        else:
            body = html.escape(message.content).replace("\n", "<br>")
            out.append(f"<p>{body}</p>")
        out.extend(self._status_html(message, c))
        return "".join(out)

    def _actions_html(self, message: Message, c: _Colors) -> str:
        def link(action: str, label: str, tip: str) -> str:
            return (f'<a href="msg:{action}:{message.id}" title="{tip}" '
                    f'style="color:{c.link}; text-decoration:none">{label}</a>')

        items = []
        if message.id in self._versions:
            number, count = self._versions[message.id]
            prev = link("prev", "‹", "Previous version") if number > 1 else f'<span style="color:{c.muted}">‹</span>'
            nxt = link("next", "›", "Next version") if number < count else f'<span style="color:{c.muted}">›</span>'
            items.append(f'{prev}&nbsp;<span style="color:{c.muted}">{number}/{count}</span>&nbsp;{nxt}')
        items.append(link("copy", "Copy", "Copy this message"))
        if message.role == "user":
            items.append(link("edit", "Edit", "Edit and resend: makes a new branch, the original stays"))
        else:
            items.append(link("regenerate", "Regenerate", "Write another version of this reply"))
        items.append(link("fork", "Fork", "Start a new chat from this message"))
        return f'&nbsp;&nbsp;<span style="color:{c.muted}">·</span>&nbsp;&nbsp;'.join(items)

    def _status_html(self, message: Message, c: _Colors) -> list[str]:
        notes = []
        dropped = int(message.meta.get("dropped_messages") or 0)
        if dropped:
            notes.append(_Note(f"{dropped} earlier message{'s were' if dropped != 1 else ' was'} left out so this "
                               "reply fitted the model's context (the system prompt was kept)."))
        if message.status == "stopped":
            notes.append(_Note("(stopped)"))
        elif message.status == "streaming":
            notes.append(_Note("(cut off: the app closed while this reply was being written)"))
        elif message.status == "error":
            error = message.meta.get("error") or "The reply failed."
            notes.append(_Note(str(error), True, f"msg:retry:{message.id}", "Retry"))
        if message.meta.get("context_full"):
            notes.append(_Note("(the model's context is full: start a new chat or load the model with a larger "
                               "context)"))
        return [self._note_html(n) for n in notes]

    def _note_html(self, note: _Note) -> str:
        c = _DARK if self._dark else _LIGHT
        color = c.error if note.error else c.muted
        action = ""
        if note.action:
            href = note.action if ":" in note.action else f"note:{note.action}"
            action = f'&nbsp;&nbsp;<a href="{href}"><b>{html.escape(note.action_label or "Retry")}</b></a>'
        return f'<p><i style="color:{color}">{html.escape(note.text)}</i>{action}</p>'

    def _markdown(self, message: Message) -> str:
        start = len(self._code)  # this message's code blocks continue the view's Copy numbering
        key = (message.id, message.content, self._dark, start)
        cached = self._cache.get(key)
        if cached is None:
            rendered = render_markdown(message.content, dark=self._dark, block_id_start=start)
            cached = (rendered.html, rendered.code_blocks)
            self._cache[key] = cached
            if len(self._cache) > 2 * SHOW_AT_ONCE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        body, blocks = cached
        self._code.extend(blocks)
        return body

    # -- cursor helpers ---------------------------------------------------------------------------
    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _fresh_block(self) -> QTextCursor:
        """A cursor at the end, in an empty plain paragraph (not inside a table or a heading's format)."""
        cursor = self._end_cursor()
        if cursor.currentTable() is not None or cursor.block().length() > 1:
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        else:
            cursor.setBlockFormat(QTextBlockFormat())
        cursor.setCharFormat(QTextCharFormat())
        return cursor

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # -- links ------------------------------------------------------------------------------------
    def _on_anchor(self, url: QUrl) -> None:
        href = url.toString()
        kind, _, rest = href.partition(":")
        if kind == "copy-code":
            index = int(rest) if rest.isdigit() else -1
            if 0 <= index < len(self._code):
                QGuiApplication.clipboard().setText(self._code[index])
                self.copied.emit("code block")
        elif kind == "msg":
            action, _, message_id = rest.partition(":")
            if action == "copy":
                message = next((m for m in self._messages if m.id == message_id), None)
                if message is not None:
                    QGuiApplication.clipboard().setText(message.content)
                    self.copied.emit("message")
            else:
                self.message_action.emit(action, message_id)
        elif kind == "note":
            if rest == "show-earlier":
                self._first_shown = 0
                self._render(keep_scroll=False)
                self.verticalScrollBar().setValue(0)
            else:
                self.note_action.emit(rest)
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)
