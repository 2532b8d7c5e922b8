"""The Server page on a real engine and a real local server, driven like a user; calls over real HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import openai
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLineEdit

from desktop_llm.core.models import BUNDLED_ID
from desktop_llm.core.settings import Settings, load_settings, save_settings
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.server_log_view import MAX_ROWS, ServerLogView
from desktop_llm.gui.server_page import ServerPage
from desktop_llm.server.key_store import ServerKeyStore
from desktop_llm.server.request_log import LogEntry
from tests.memory_keyring import MemoryKeyring

KEY = "sk-page-test-secret-7d41c9e2"
KEYRING_SLOT = (ServerKeyStore.SERVICE, ServerKeyStore.KEY)
TIMEOUT = 20_000


@pytest.fixture(scope="module")
def page_engine():
    client = EngineClient()
    yield client
    client.shutdown()


@pytest.fixture()
def make_page(qtbot, page_engine, tmp_path):
    """A page over its own in-memory keyring, saving to ``tmp_path/settings.json`` like the window does."""
    made: list[ServerPage] = []

    def make(**server) -> SimpleNamespace:
        saved: list[Settings] = []
        path = tmp_path / "settings.json"

        def save(settings: Settings) -> None:
            saved.append(settings)
            save_settings(settings, path)

        keyring = MemoryKeyring()
        page = ServerPage(page_engine, Settings(server={"port": 0, **server}), save, ServerKeyStore(keyring))
        qtbot.addWidget(page)
        page.resize(1100, 800)
        page.show()
        made.append(page)
        qtbot.waitUntil(lambda: "keyring…" not in page.key_status.text(), timeout=TIMEOUT)
        return SimpleNamespace(page=page, saved=saved, path=path, keyring=keyring)

    yield make
    for page in made:
        page.shutdown()


def start(qtbot, page: ServerPage) -> str:
    with qtbot.waitSignal(page.running_changed, timeout=TIMEOUT) as sent:
        qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    running, url = sent.args
    assert running and url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    return url


def set_key(qtbot, page: ServerPage, key: str) -> None:
    qtbot.keyClicks(page.key_edit, key)
    qtbot.mouseClick(page.save_key_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "is set" in page.key_status.text(), timeout=TIMEOUT)


def type_into(qtbot, widget, text: str) -> None:
    widget.setFocus()
    widget.selectAll()
    qtbot.keyClicks(widget, text)
    qtbot.keyClick(widget, Qt.Key.Key_Return)


def rows(page: ServerPage) -> list[list[str]]:
    model = page.log_view.model
    return [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(model.rowCount())]


def click_row(qtbot, page: ServerPage, row: int) -> None:
    table = page.log_view.table
    table.scrollTo(table.model().index(row, 0))
    rect = table.visualRect(table.model().index(row, 2))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def everything_shown(page: ServerPage) -> str:
    """All text the page shows: table cells, the detail pane, status lines, examples and fields."""
    texts = [cell or "" for row in rows(page) for cell in row]
    texts += [page.log_view.detail.toPlainText(), page.status_label.text(), page.status_hint.text(),
              page.key_status.text(), page.curl_text.toPlainText(), page.python_text.toPlainText(),
              page.endpoints_label.text()]
    return "\n".join(texts)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict, key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def test_a_chat_is_logged_and_a_wrong_key_is_refused_in_red(qtbot, make_page):
    made = make_page()
    page = made.page
    set_key(qtbot, page, KEY)
    assert page.key_edit.text() == "" and page.key_edit.echoMode() == QLineEdit.EchoMode.Password
    url = start(qtbot, page)
    assert f"Running at <b>{url}</b>" in page.status_label.text()
    assert "API key is required" in page.status_hint.text()
    qtbot.waitUntil(lambda: BUNDLED_ID in page.python_text.toPlainText(), timeout=TIMEOUT)
    assert f'base_url="{url}"' in page.python_text.toPlainText()
    assert 'os.environ["DESKTOP_LLM_API_KEY"]' in page.python_text.toPlainText()
    compile(page.python_text.toPlainText(), "python example", "exec")

    oai = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
    reply = oai.chat.completions.create(model=BUNDLED_ID, messages=[{"role": "user", "content": "Say hi."}],
                                        max_tokens=4, temperature=0)
    qtbot.waitUntil(lambda: len(rows(page)) == 1, timeout=TIMEOUT)
    time, method, path, status, model, tokens, duration, error = rows(page)[0]
    assert (method, path, status, model, error) == ("POST", "/v1/chat/completions", "200", BUNDLED_ID, "")
    assert tokens == f"{reply.usage.prompt_tokens}+{reply.usage.completion_tokens}"
    assert duration.endswith(" ms") and time.count(":") == 2

    wrong = openai.OpenAI(base_url=url, api_key="sk-not-the-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    qtbot.waitUntil(lambda: len(rows(page)) == 2, timeout=TIMEOUT)
    assert rows(page)[1][3] == "401" and "Incorrect API key" in rows(page)[1][7]
    model = page.log_view.model
    red = QApplication.palette().color(QPalette.ColorRole.BrightText)
    assert model.index(1, 3).data(Qt.ItemDataRole.ForegroundRole).color() == red
    assert model.index(0, 3).data(Qt.ItemDataRole.ForegroundRole) is None
    assert page.log_view.count_label.text() == "2 requests, 1 failed"

    click_row(qtbot, page, 1)
    detail = page.log_view.detail.toPlainText()
    assert "→ 401" in detail and "Incorrect API key" in detail and "bodies are not logged" in detail
    shown = everything_shown(page)
    assert KEY not in shown and KEY[-8:] not in shown and "sk-not-the-key" not in shown


def test_a_network_address_without_a_key_does_not_start(qtbot, make_page):
    made = make_page()
    page = made.page
    page.address_combo.setFocus()
    qtbot.keyClick(page.address_combo, Qt.Key.Key_Down)
    assert page.address_combo.currentText() == "Local network (0.0.0.0)"
    assert made.saved[-1].server["host"] == "0.0.0.0"
    assert "set an API key first" in page.address_problem.text() and page.address_problem.isVisible()

    qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "cannot start" in page.status_label.text(), timeout=TIMEOUT)
    red = QApplication.palette().color(QPalette.ColorRole.BrightText).name()
    assert f"color:{red}" in page.status_label.text() and "set an API key first" in page.status_label.text()
    assert page.server is None and page.toggle_button.text() == "Start server"
    assert page.toggle_button.isEnabled() and not page.copy_url_button.isVisible()


def test_the_key_is_kept_in_the_keyring_and_settings_are_saved_without_it(qtbot, make_page):
    made = make_page()
    page = made.page
    assert "No key set" in page.key_status.text() and not page.clear_key_button.isEnabled()
    qtbot.mouseClick(page.generate_key_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: KEYRING_SLOT in made.keyring.secrets, timeout=TIMEOUT)
    key = made.keyring.secrets[KEYRING_SLOT]
    assert key.startswith("sk-local-") and len(key) > 30
    # A generated key stays visible in the field, so it can be copied into the programs that call.
    assert page.key_edit.text() == key and page.key_edit.echoMode() == QLineEdit.EchoMode.Normal
    qtbot.waitUntil(lambda: "kept in the system keyring" in page.key_status.text(), timeout=TIMEOUT)
    assert f"…{key[-4:]}" in page.key_status.text() and key not in page.key_status.text()
    qtbot.mouseClick(page.copy_key_button, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == key
    qtbot.mouseClick(page.show_key_button, Qt.MouseButton.LeftButton)
    assert page.key_edit.echoMode() == QLineEdit.EchoMode.Password and page.show_key_button.text() == "Show"

    type_into(qtbot, page.origins_edit, "http://localhost:3000, https://app.example/")
    type_into(qtbot, page.idle_spin, "5")
    qtbot.mouseClick(page.log_bodies_check, Qt.MouseButton.LeftButton)
    type_into(qtbot, page.port_spin, "9321")
    assert made.saved[-1].server == {"host": "127.0.0.1", "port": 9321, "log_bodies": True,
                                     "allowed_origins": ["http://localhost:3000", "https://app.example"],
                                     "idle_unload_seconds": 300}
    on_disk = made.path.read_bytes()
    assert key.encode() not in on_disk and key[-12:].encode() not in on_disk
    assert load_settings(made.path).server == made.saved[-1].server
    assert "http://127.0.0.1:9321/v1/chat/completions" in page.curl_text.toPlainText()
    assert "Bearer $DESKTOP_LLM_API_KEY" in page.curl_text.toPlainText()
    assert key not in everything_shown(page)

    qtbot.mouseClick(page.clear_key_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "No key set" in page.key_status.text(), timeout=TIMEOUT)
    assert KEYRING_SLOT not in made.keyring.secrets and page.key_edit.text() == ""
    assert "Authorization" not in page.curl_text.toPlainText()
    compile(page.python_text.toPlainText(), "python example", "exec")

    # Settings changed elsewhere are shown, without being saved back.
    count = len(made.saved)
    page.set_settings(Settings(server={"host": "192.168.0.7", "port": 9123}))
    assert page.address_combo.currentText() == "Custom address…" and page.custom_address.text() == "192.168.0.7"
    assert page.port_spin.value() == 9123 and not page.log_bodies_check.isChecked()
    assert len(made.saved) == count


def test_a_change_while_running_asks_for_a_restart_that_applies_it(qtbot, make_page):
    made = make_page()
    page = made.page
    url = start(qtbot, page)
    assert not page.restart_bar.isVisible()
    port = free_port()
    type_into(qtbot, page.port_spin, str(port))
    assert page.restart_bar.isVisible() and page.server is not None and page.server.url == url

    new_url = f"http://127.0.0.1:{port}/v1"
    with qtbot.waitSignal(page.running_changed, timeout=TIMEOUT) as sent:
        qtbot.mouseClick(page.restart_button, Qt.MouseButton.LeftButton)
    assert sent.args == [True, new_url]
    assert not page.restart_bar.isVisible() and new_url in page.status_label.text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
        assert json.loads(reply.read()) == {"status": "ok"}
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=5)


def test_stop_frees_the_port_and_says_so(qtbot, make_page):
    page = make_page().page
    url = start(qtbot, page)
    port = int(url.rsplit(":", 1)[1].removesuffix("/v1"))
    with qtbot.waitSignal(page.running_changed, timeout=TIMEOUT) as sent:
        qtbot.mouseClick(page.toggle_button, Qt.MouseButton.LeftButton)
        assert page.server is None  # at once; the port is released on the worker thread
    assert sent.args == [False, ""]
    assert "Stopped" in page.status_label.text() and page.toggle_button.text() == "Start server"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # would raise "address in use" if the server still held it


def test_with_bodies_logged_selecting_a_row_shows_the_request_and_reply(qtbot, make_page):
    made = make_page()
    page = made.page
    qtbot.mouseClick(page.log_bodies_check, Qt.MouseButton.LeftButton)
    assert made.saved[-1].server["log_bodies"] is True
    url = start(qtbot, page)
    reply = post(url + "/completions", {"model": BUNDLED_ID, "prompt": "The sky is", "max_tokens": 4,
                                        "temperature": 0})
    text = reply["choices"][0]["text"]
    qtbot.waitUntil(lambda: len(rows(page)) == 1, timeout=TIMEOUT)
    assert page.log_view.detail.toPlainText() == ""
    click_row(qtbot, page, 0)
    detail = page.log_view.detail.toPlainText()
    assert '"prompt": "The sky is"' in detail and f"Reply:\n{text}" in detail
    assert f"{reply['usage']['completion_tokens']} completion tokens" in detail

    qtbot.mouseClick(page.log_view.clear_button, Qt.MouseButton.LeftButton)
    assert rows(page) == [] and page.log_view.detail.toPlainText() == ""
    assert page.log_view.count_label.text() == "No requests yet"


def test_the_log_keeps_the_last_rows_in_start_order_and_follows_only_from_the_bottom(qtbot):
    view = ServerLogView()
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    start = 1_700_000_000.0
    for i in range(MAX_ROWS + 5):
        view.add(LogEntry("GET", f"/v1/models/{i}", 200, "127.0.0.1", at=start + i))
    model = view.model
    assert model.rowCount() == MAX_ROWS and model.entry(0).path == "/v1/models/5"
    assert view.count_label.text() == f"{MAX_ROWS:,} requests (the last {MAX_ROWS:,})"
    bar = view.table.verticalScrollBar()
    assert bar.value() == bar.maximum() > 0  # followed the new rows

    # A reply logged just after the next request's entry goes back above it.
    late = start + MAX_ROWS + 10
    view.add(LogEntry("GET", "/second", 401, "127.0.0.1", at=late + 0.3))
    view.add(LogEntry("POST", "/first", 200, "127.0.0.1", at=late))
    assert [model.entry(r).path for r in (MAX_ROWS - 2, MAX_ROWS - 1)] == ["/first", "/second"]

    bar.setValue(0)  # the user scrolled up to read: new rows do not pull the view down
    view.add(LogEntry("GET", "/third", 200, "127.0.0.1", at=late + 1))
    assert bar.value() == 0
