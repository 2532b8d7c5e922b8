"""The app as a remote provider of itself: a second instance serves (``desktop-llm serve``, its own process
and home), this window adds it under Settings › Remote providers, picks its model and chats through it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_llm.gui.remote_providers_group import ProviderDialog

KEY = "sk-second-instance-4242"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def second_instance(tmp_path):
    env = {**os.environ, "DESKTOP_LLM_HOME": str(tmp_path / "second-home"), "DESKTOP_LLM_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "desktop_llm.cli", "serve", "--port", "0", "--idle-unload", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 60
    url = None
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        url = next((m.group(1) for line in list(lines) if (m := re.search(r"Serving on (\S+)", line))), None)
        time.sleep(0.05)
    assert url, "".join(lines)
    yield url, lines
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def provider_added(win, url: str, name: str):
    """Add ``url`` as a remote provider the way the Add dialog does; remove it (and its key) afterwards, as the
    app home is shared by the whole test session."""
    group = win.remote_providers
    dialog = ProviderDialog(None, False, group)
    dialog.name_edit.setText(name)
    dialog.url_edit.setText(url)
    dialog.key_edit.setText(KEY)
    provider = group.save_from_dialog(None, dialog)
    assert provider is not None, dialog.error.text()
    try:
        yield provider
    finally:
        group.list.setCurrentRow(next(i for i, p in enumerate(group.providers()) if p.id == provider.id))
        group.remove_current()


def test_chat_through_a_second_instance_streaming_and_stop(qtbot, ui, open_window, second_instance):
    url, served_log = second_instance
    win = open_window({"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 400})
    group = win.remote_providers
    with provider_added(win, url, "Second instance"):
        assert KEY not in (Path(os.environ["DESKTOP_LLM_HOME"]) / "remote_providers.json").read_text()
        qtbot.waitUntil(lambda: "Connected to Second instance: 1 model" in group.status.text(), timeout=30_000)

        # Its model is in the picker next to the local ones; pick it.
        win.open_model_picker()
        picker = win._picker
        qtbot.waitUntil(lambda: any("Second instance" in t for t in picker.row_texts()), timeout=30_000)
        assert any("SmolLM2" in t and "Second instance" not in t for t in picker.row_texts())  # local ones stay
        row = next(i for i, t in enumerate(picker.row_texts()) if "Second instance" in t)
        picker.list.setCurrentRow(row)
        with qtbot.waitSignal(win.engine.loaded, timeout=30_000) as loaded:
            picker.pick_current()
        assert loaded.args[0]["backend"] == "remote"
        assert "remote on Second instance" in win.model_status.text()
        qtbot.waitUntil(lambda: win.chat.send_button.isEnabled(), timeout=5_000)
        win.activateWindow()  # the picker closed; the window manager gives the window back its focus
        qtbot.waitUntil(win.isActiveWindow, timeout=5_000)

        # A reply streams in token by token, through the other instance's server.
        tokens: list[str] = []
        win.engine.token.connect(lambda ev: tokens.append(ev["text"]))
        chat = win.chat
        done = ui.send_and_wait(win, "What is the capital of France? Answer in one word.")
        assert len(tokens) > 1
        assert "".join(tokens).strip() in chat.transcript_text()
        assert any(re.search(r"POST\s+/v1/chat/completions\s+200", line) for line in served_log)
        assert done["usage"]["completion_tokens"] == len(tokens)

        # Stop: the reply ends as stopped, and the other instance sees its client leave.
        tokens.clear()
        with qtbot.waitSignal(chat.reply_done, timeout=60_000) as stopped:
            ui.send(win, "Count from 1 to 300, separated by commas.")
            qtbot.waitUntil(lambda: len(tokens) >= 5, timeout=30_000)
            qtbot.keyClick(chat.input, Qt.Key.Key_Escape)
        assert stopped.args[0]["finish_reason"] == "cancelled", (len(tokens), "".join(tokens), stopped.args[0])
        assert "(stopped)" in chat.transcript_text()
        qtbot.waitUntil(lambda: any(re.search(r"\s499\s", line) for line in served_log), timeout=15_000)
        # and the next message is answered at once
        assert ui.send_and_wait(win, "Say hello.")["finish_reason"] in ("stop", "length")


def test_the_playground_on_a_remote_model_shows_its_probabilities_and_explains_why_it_cannot_branch(
        qtbot, open_window, second_instance):
    from desktop_llm.remote.library import remote_ref

    url, _log = second_instance
    win = open_window()
    with provider_added(win, url, "Other box") as provider:
        with qtbot.waitSignal(win.engine.loaded, timeout=30_000):
            win.load_model(remote_ref(f"remote:{provider.id}/bundled:SmolLM2-135M-Instruct"))
        page = win.playground
        win.show_page(page)
        page.prompt.text.setPlainText("The three primary colours are")
        page.params_panel.set_values({"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 6})
        view = page.generate_view
        with qtbot.waitSignal(view.run_finished, timeout=60_000) as finished:
            qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
        assert finished.args[0]["finish_reason"] == "length"
        shown = view.view.tokens
        assert len(shown) == 6 and all(t.prob is not None and len(t.alternatives) == 10 for t in shown)
        assert all(t.is_alternative(max(t.alternatives, key=lambda a: a["logprob"])) for t in shown)  # greedy
        with qtbot.waitSignal(view.status, timeout=5_000) as said:
            other = next(a for a in shown[0].alternatives if not shown[0].is_alternative(a))
            view.branch(0, other)
        assert "token ids" in said.args[0] and not view.busy
