"""The desktop window, driven like a user drives it, on the real engine and bundled model (offscreen Qt)."""

from __future__ import annotations

import os
import signal

import pytest
from PySide6.QtCore import Qt

from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.chat_window import ChatWindow
from desktop_llm.gui.engine_bridge import QtEngine


@pytest.fixture()
def window(qtbot, bundled_ref):
    engine = QtEngine(EngineClient())
    win = ChatWindow(engine, SamplingParams(seed=3, max_tokens=300))
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(engine.loaded, timeout=60_000):
        engine.load(bundled_ref)
    yield win
    engine.shutdown()


def type_and_send(qtbot, win, text):
    qtbot.keyClicks(win.input, text)
    qtbot.keyClick(win.input, Qt.Key.Key_Return)


def test_send_message_and_see_streamed_reply(qtbot, window):
    assert "SmolLM2" in window.model_label.text() and window.send_button.isEnabled()
    tokens = []
    window.engine.token.connect(lambda ev: tokens.append(ev["text"]))
    window.params = SamplingParams(temperature=0, repeat_penalty=1.0, max_tokens=40)
    with qtbot.waitSignal(window.engine.finished, timeout=60_000):
        type_and_send(qtbot, window, "What is the capital of France? Answer in one word.")
        assert window.stop_button.isEnabled() and not window.send_button.isEnabled()
    reply = "".join(tokens)
    assert len(tokens) > 1 and "Paris" in reply
    assert window.transcript_text().rstrip().endswith(reply.rstrip())
    assert window.history[-1] == {"role": "assistant", "content": reply}
    assert "tok/s" in window.reply_stats.text()
    assert window.input.toPlainText() == "" and window.send_button.isEnabled()


def test_stop_keeps_the_partial_reply(qtbot, window):
    got = []
    window.engine.token.connect(lambda ev: got.append(ev["text"]))
    with qtbot.waitSignal(window.engine.finished, timeout=60_000) as done:
        type_and_send(qtbot, window, "Tell me a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(got) >= 5, timeout=30_000)
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert done.args[0]["finish_reason"] == "cancelled"
    assert "(stopped)" in window.transcript_text()
    assert window.history[-1]["content"] == "".join(got) and len(got) < 300


def test_engine_killed_mid_reply_shows_error_and_next_message_works(qtbot, window):
    got = []
    window.engine.token.connect(lambda ev: got.append(ev))
    with qtbot.waitSignal(window.engine.failed, timeout=60_000) as failed:
        type_and_send(qtbot, window, "Tell me a very long story about a dragon.")
        qtbot.waitUntil(lambda: len(got) >= 3, timeout=30_000)
        os.kill(window.engine.client.pid, signal.SIGKILL)
    assert "engine stopped unexpectedly" in failed.args[0]
    assert "engine stopped unexpectedly" in window.transcript_text()
    assert window.isVisible() and window.send_button.isEnabled()
    window.params = SamplingParams(temperature=0, max_tokens=20)
    got.clear()
    with qtbot.waitSignal(window.engine.finished, timeout=60_000):
        type_and_send(qtbot, window, "What is the capital of France?")
    assert "Paris" in "".join(e["text"] for e in got)
