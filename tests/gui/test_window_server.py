"""The Server page in the main window: an API client and the window's own chat share one engine."""

from __future__ import annotations

import socket
import threading

import openai
from PySide6.QtCore import Qt


def test_a_client_and_the_window_chat_at_the_same_time_each_get_their_own_reply(qtbot, ui, open_window):
    win = open_window(server={"port": 0})
    win.show_page(win.server_page)
    page = win.server_page
    qtbot.waitUntil(lambda: page.toggle_button.isEnabled(), timeout=20_000)
    with qtbot.waitSignal(page.running_changed, timeout=20_000) as started:
        qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    running, url = started.args
    assert running and win.server_status.text() == f"Server: {url}"

    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    alone = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0).choices[0].text
    served: list[str] = []
    thread = threading.Thread(target=lambda: served.append(client.completions.create(
        model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0).choices[0].text))

    win.show_page(win.chat)
    with qtbot.waitSignal(win.chat.reply_done, timeout=60_000):
        thread.start()
        ui.send(win, "What is the capital of France? Answer in one word.")
    thread.join(60)
    assert served == [alone]  # the API client's reply, untouched by the window's
    assert "Paris" in win.chat.transcript_text()
    qtbot.waitUntil(lambda: page.log_view.table.model().rowCount() >= 3, timeout=10_000)

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    win.close()  # closing the window stops the server
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would, past TIME_WAIT
        sock.bind(("127.0.0.1", port))
        sock.listen()
