"""The Server page: start and stop the local OpenAI-compatible server, set how it listens and who may
call it, see how to call it, and watch the requests it answers.

Settings are saved as they change (the API key in the OS keyring, never in the settings file) and apply
at the next start. Reading the keyring and starting or stopping the server can block (a keyring unlock,
``httpd.shutdown`` waiting for its poll), so both run in order on the page's own worker thread.
"""

from __future__ import annotations

import html
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError, InvalidRequest
from desktop_llm.core.models import BUNDLED_ID
from desktop_llm.core.settings import Settings
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.server_log_view import ServerLogView
from desktop_llm.gui.spin_boxes import int_spin
from desktop_llm.gui.theme import is_dark
from desktop_llm.server.config import ServerConfig, is_loopback
from desktop_llm.server.http_server import LocalServer
from desktop_llm.server.request_log import LogEntry

if TYPE_CHECKING:  # keyring takes about half a second to import: it is imported on the worker thread
    from desktop_llm.server.key_store import ServerKeyStore

KEY_ENV = "DESKTOP_LLM_API_KEY"  # the variable the examples (and ``desktop-llm serve``) read the key from
_ADDRESSES = (("This computer only (127.0.0.1)", "127.0.0.1"), ("Local network (0.0.0.0)", "0.0.0.0"),
              ("Custom address…", ""))
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # listen-everywhere addresses and where to reach them here


def _hint(text: str, name: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)  # readable in light and dark
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Expanding)
    policy.setHeightForWidth(True)  # or a wrapped label gets one line's height and is cut
    label.setSizePolicy(policy)
    if name:
        label.setObjectName(name)
    return label


def _button(text: str, name: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button


def _colour(kind: str) -> str:
    """A colour for rich text that reads well on the current theme's window colour."""
    if kind == "error":
        return QGuiApplication.palette().color(QPalette.ColorRole.BrightText).name()
    dark = is_dark()
    return {"ok": "#66bb6a" if dark else "#2e7d32", "warn": "#e0b341" if dark else "#8d6e00"}[kind]


def _lan_address() -> str | None:
    """This machine's address on its network (a UDP "connect" only picks a route; nothing is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if is_loopback(address) else address


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _with_host(url: str, host: str, new: str) -> str:
    """``url`` with the address it listens on swapped for one a caller can reach (0.0.0.0 is not)."""
    return url.replace(f"//{_bracketed(host)}:", f"//{_bracketed(new)}:", 1)


def _config_of(settings: Settings) -> ServerConfig:
    try:
        return ServerConfig.from_dict(settings.server)
    except (InvalidRequest, TypeError):
        return ServerConfig()  # damaged server settings: the defaults, saved again at the first change


def _redacted(entry: LogEntry, key: str | None) -> LogEntry:
    """The entry with the key blanked wherever a client echoed it into a body, reply or error."""
    if not key:
        return entry
    hide = lambda text: text.replace(key, "•••") if text else text  # noqa: E731
    return replace(entry, body=hide(entry.body), reply=hide(entry.reply), error=hide(entry.error),
                   model=hide(entry.model))


class ServerPage(QWidget):
    """``running_changed(running, url)`` tells the window (url is "" when stopped)."""

    running_changed = Signal(bool, str)
    _entry_arrived = Signal(object)  # LogEntry from a server thread, delivered on the GUI thread

    def __init__(self, client: EngineClient, settings: Settings, save_settings: Callable[[Settings], None],
                 key_store: ServerKeyStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serverPage")
        self.client = client
        self._settings = settings
        self._save = save_settings
        self._store = key_store  # only touched on the worker thread
        self._config = _config_of(settings)
        self._server: LocalServer | None = None
        self._live: set[LocalServer] = set()  # started and not yet stopped, whatever the GUI knows yet
        self._live_lock = threading.Lock()
        self._busy = ""  # "starting", "restarting", "stopping" or ""
        self._failure: tuple[str, str] | None = None  # the last start's message and hint
        self._applied: tuple[dict[str, Any], int] | None = None  # what the running server was started with
        self._key_generation = 0  # counts key changes, so a change while running asks for a restart
        self._key_state: tuple[str | None, bool, str | None] | None = None  # mask, secure, problem
        self._lan: str | None = None
        self._model_id = BUNDLED_ID
        self._closed = False
        self._shown_once = False
        self._built = False
        self._worker = Background(self)

        self.log_view = ServerLogView()
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 8, 0)
        column.setSpacing(12)
        column.addWidget(self._settings_group())
        column.addWidget(self._endpoints_group())
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(left)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("serverSplitter")
        splitter.addWidget(scroll)
        splitter.addWidget(self.log_view)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        self._scroll = scroll
        self._splitter = splitter
        left.installEventFilter(self)  # a longer button text or a bigger font widens the column
        self._fit_settings_column()
        splitter.setChildrenCollapsible(False)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(20, 16, 20, 16)
        outer.setSpacing(10)
        outer.addLayout(self._header())
        outer.addWidget(self._restart_bar())
        outer.addWidget(splitter, 1)

        self._connect()
        self.set_settings(settings)
        self._built = True

    # -- building -------------------------------------------------------------------------------------
    def _header(self) -> QHBoxLayout:
        title = QLabel("<h2 style='margin:0'>Local server</h2>")
        title.setTextFormat(Qt.TextFormat.RichText)
        about = _hint("An OpenAI-compatible API for this app's models, for your own programs, scripts and "
                      "tools. It shares the engine with this window.")
        self.status_label = QLabel()
        self.status_label.setObjectName("serverStatus")
        self.status_label.setTextFormat(Qt.TextFormat.RichText)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.setWordWrap(True)
        self.copy_url_button = _button("Copy URL", "copyServerUrl", "Copy the server's base URL")
        self.status_hint = _hint("", "serverStatusHint")
        self.status_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.copy_url_button)
        status_row.addStretch(0)
        self._status_row = status_row
        text = QVBoxLayout()
        text.setSpacing(4)
        text.addWidget(title)
        text.addWidget(about)
        text.addSpacing(4)
        text.addLayout(status_row)
        text.addWidget(self.status_hint)

        self.toggle_button = _button("Start server", "serverToggle")
        font = self.toggle_button.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.toggle_button.setFont(font)
        self.toggle_button.setMinimumSize(170, 44)
        self.toggle_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        header = QHBoxLayout()
        header.setSpacing(20)
        header.addLayout(text, 1)
        header.addWidget(self.toggle_button, 0, Qt.AlignmentFlag.AlignTop)
        return header

    def _restart_bar(self) -> QFrame:
        self.restart_bar = QFrame()
        self.restart_bar.setObjectName("restartNotice")
        self.restart_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.restart_bar.setAutoFillBackground(True)
        self.restart_bar.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.restart_label = QLabel("Settings changed. Restart the server to apply them.")
        self.restart_button = _button("Restart", "restartServer", "Stop the server and start it with the new settings")
        row = QHBoxLayout(self.restart_bar)
        row.setContentsMargins(10, 6, 10, 6)
        row.addWidget(self.restart_label, 1)
        row.addWidget(self.restart_button)
        self.restart_bar.hide()
        return self.restart_bar

    def _settings_group(self) -> QGroupBox:
        box = QGroupBox("Settings")
        layout = QVBoxLayout(box)
        layout.setSpacing(4)

        def add_row(caption: str, *items: QWidget | QHBoxLayout) -> None:
            # Captions above their fields, in a plain box layout: the column is narrow, and QFormLayout
            # gets the height of wrapped explanations wrong (their last line was cut).
            if layout.count():
                layout.addSpacing(8)
            layout.addWidget(QLabel(f"<b>{caption}</b>"))
            for item in items:
                if isinstance(item, QHBoxLayout):
                    layout.addLayout(item)
                else:
                    layout.addWidget(item)

        self.address_combo = QComboBox()
        self.address_combo.setObjectName("serverAddress")
        for text, host in _ADDRESSES:
            self.address_combo.addItem(text, host)
        self.address_combo.setToolTip("Which network the server listens on")
        self.custom_address = QLineEdit()
        self.custom_address.setObjectName("serverCustomAddress")
        self.custom_address.setPlaceholderText("An address of this machine, e.g. 192.168.1.20 or ::1")
        self.address_problem = _hint("", "serverAddressProblem")
        add_row("Address", self.address_combo, self.custom_address,
                _hint("Only this computer can call the server at 127.0.0.1. The local network lets other "
                      "machines call it too, and then an API key is required."), self.address_problem)

        self.port_spin = int_spin("serverPort", 0, 65535, "The port programs connect to", special="Any free port")
        self.port_spin.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        add_row("Port", self.port_spin, _hint("If another program uses the port, the server cannot start: pick "
                                              "another (1024–65535). “Any free port” lets the system choose; "
                                              "the status above shows it."))

        self.key_edit = QLineEdit()
        self.key_edit.setObjectName("serverKeyEdit")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("Type a key, or Generate one")
        self.show_key_button = _button("Show", "showServerKey", "Show or hide the key you typed")
        self.show_key_button.setCheckable(True)
        self.generate_key_button = _button("Generate", "generateServerKey", "Make a new random key and save it")
        self.copy_key_button = _button("Copy", "copyServerKey", "Copy the key (the one typed, else the saved one)")
        self.save_key_button = _button("Save key", "saveServerKey", "Use this key from the next start")
        self.clear_key_button = _button("Remove", "clearServerKey", "Serve without a key (127.0.0.1 only)")
        self.key_status = _hint("Reading the keyring…", "serverKeyStatus")
        self.key_status.setForegroundRole(QPalette.ColorRole.WindowText)
        key_row, buttons = QHBoxLayout(), QHBoxLayout()
        key_row.addWidget(self.key_edit, 1)
        key_row.addWidget(self.show_key_button)
        for button in (self.generate_key_button, self.copy_key_button, self.save_key_button, self.clear_key_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        add_row("API key", key_row, buttons, self.key_status,
                _hint("With a key set, every request must send <code>Authorization: Bearer &lt;key&gt;</code> "
                      "(the <code>openai</code> library's <code>api_key</code> does that). Addresses other "
                      "than this computer's require a key."))

        self.origins_edit = QLineEdit()
        self.origins_edit.setObjectName("serverOrigins")
        self.origins_edit.setPlaceholderText("Off, e.g. http://localhost:3000, https://my.app")
        add_row("Allowed origins", self.origins_edit,
                _hint("Web pages from these origins (comma-separated; * for any) may call the server from a "
                      "browser. Empty: browsers on other sites are refused. Programs and scripts are not affected."))

        self.log_bodies_check = QCheckBox("Log request and reply bodies")
        self.log_bodies_check.setObjectName("serverLogBodies")
        add_row("Privacy", self.log_bodies_check,
                _hint("Prompts and replies can be private: when on, they are kept in this page's log (in memory, "
                      "not on disk) until you clear it or close the app."))

        self.idle_spin = int_spin("serverIdleUnload", 0, 24 * 60, "Free a model the server loaded after this "
                                  "long without requests", suffix=" min", special="Never")
        self.idle_spin.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        add_row("Idle unload", self.idle_spin,
                _hint("A model the server loaded for a request is freed after this long without requests, "
                      "giving its memory back. The window's own model is kept."))

        layout.addSpacing(8)
        layout.addWidget(_hint("Changes are saved at once and apply the next time the server starts."))
        return box

    def _endpoints_group(self) -> QGroupBox:
        box = QGroupBox("How to call it")
        self.endpoints_label = QLabel()
        self.endpoints_label.setObjectName("serverEndpoints")
        self.endpoints_label.setTextFormat(Qt.TextFormat.RichText)
        self.endpoints_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.endpoints_label.setWordWrap(True)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.curl_text = QPlainTextEdit()
        self.python_text = QPlainTextEdit()
        self.examples = QTabWidget()
        self.examples.setObjectName("serverExamples")
        for edit, name, tab in ((self.curl_text, "curlExample", "curl"),
                                (self.python_text, "pythonExample", "Python (openai)")):
            edit.setObjectName(name)
            edit.setReadOnly(True)
            edit.setFont(mono)
            edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            # The whole Python example, above the horizontal scroll bar that long lines bring.
            edit.setFixedHeight(edit.fontMetrics().lineSpacing() * 10 + 14
                                + edit.horizontalScrollBar().sizeHint().height())
            self.examples.addTab(edit, tab)
        self.copy_example_button = _button("Copy example", "copyServerExample", "Copy the example shown")
        copy_row = QHBoxLayout()
        copy_row.addWidget(_hint(f"The key is read from ${KEY_ENV}: it is never shown in these examples."), 1)
        copy_row.addWidget(self.copy_example_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(box)
        layout.addWidget(self.endpoints_label)
        layout.addWidget(self.examples)
        layout.addLayout(copy_row)
        return box

    def _connect(self) -> None:
        self._entry_arrived.connect(self.log_view.add)
        self.toggle_button.clicked.connect(self._toggle)
        self.restart_button.clicked.connect(self.restart_server)
        # The address a program here uses (for 0.0.0.0, 127.0.0.1), which is what the examples show too.
        self.copy_url_button.clicked.connect(lambda: self._copy(self._base_url() if self._server else ""))
        self.address_combo.currentIndexChanged.connect(self._address_chosen)
        self.custom_address.editingFinished.connect(self._commit_custom_address)
        self.port_spin.valueChanged.connect(lambda port: self._commit(port=port))
        self.origins_edit.editingFinished.connect(self._commit_origins)
        self.log_bodies_check.toggled.connect(lambda on: self._commit(log_bodies=on))
        self.idle_spin.valueChanged.connect(lambda minutes: self._commit(idle_unload_seconds=minutes * 60))
        self.show_key_button.toggled.connect(self._reveal_key)
        self.key_edit.returnPressed.connect(self._save_key)
        self.save_key_button.clicked.connect(lambda: self._save_key())
        self.generate_key_button.clicked.connect(self._generate_key)
        self.clear_key_button.clicked.connect(self._clear_key)
        self.copy_key_button.clicked.connect(self._copy_key)
        self.copy_example_button.clicked.connect(
            lambda: self._copy(self.examples.currentWidget().toPlainText()))  # type: ignore[union-attr]

    def _fit_settings_column(self) -> None:
        # Never narrower than its content (the column only scrolls up and down), and no wider at first.
        content = self._scroll.widget()
        content.ensurePolished()
        width = content.minimumSizeHint().width() + self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(width)
        sizes = self._splitter.sizes()
        if sum(sizes) > 0 and sizes[0] < width:
            self._splitter.setSizes([width, max(sum(sizes) - width, 1)])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.LayoutRequest and watched is self._scroll.widget():
            self._fit_settings_column()
        return super().eventFilter(watched, event)

    def showEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._shown_once:  # sizes are only right once the style has polished every widget
            self._shown_once = True
            # The keyring is read when the page is first opened, not at start-up: importing it costs about
            # half a second, and a locked keyring may ask the user to unlock it.
            self._worker.run(self._read_key_state, self._show_key_state, self._key_failed)
            self._fit_settings_column()
            self._splitter.setSizes([self._scroll.minimumWidth(), max(self.width() - self._scroll.minimumWidth(), 1)])

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if self._built and event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._show_state()  # rich-text colours were picked for the old theme
            self._show_key_state(self._key_state)

    # -- the app's settings ---------------------------------------------------------------------------
    def set_settings(self, settings: Settings) -> None:
        """Show settings changed elsewhere (they apply at the next start, like the page's own changes)."""
        self._settings = settings
        self._config = config = _config_of(settings)
        widgets = (self.address_combo, self.custom_address, self.port_spin, self.origins_edit,
                   self.log_bodies_check, self.idle_spin)
        blocked = [w.blockSignals(True) for w in widgets]
        try:
            index = self.address_combo.findData(config.host)
            self.address_combo.setCurrentIndex(index if index >= 0 else len(_ADDRESSES) - 1)
            self.custom_address.setText("" if index >= 0 else config.host)
            self.custom_address.setVisible(index < 0)
            self.port_spin.setValue(config.port)
            self.origins_edit.setText(", ".join(config.allowed_origins))
            self.log_bodies_check.setChecked(config.log_bodies)
            self.idle_spin.setValue(round(config.idle_unload_seconds / 60))
        finally:
            for widget, was in zip(widgets, blocked, strict=True):
                widget.blockSignals(was)
        self._refresh()

    @property
    def settings(self) -> Settings:
        return self._settings

    def _commit(self, **changes: Any) -> None:
        config = replace(self._config, **changes)
        if config == self._config:
            return
        self._config = config
        self._settings = replace(self._settings, server=config.to_dict())
        self._save(self._settings)
        self._refresh()

    def _address_chosen(self, index: int) -> None:
        host = self.address_combo.itemData(index)
        self.custom_address.setVisible(not host)
        if host:
            self._commit(host=host)
        else:
            self.custom_address.setFocus()
            self._commit_custom_address()

    def _commit_custom_address(self) -> None:
        host = self.custom_address.text().strip()
        if host and not self.address_combo.currentData():
            self._commit(host=host)

    def _commit_origins(self) -> None:
        origins = [o.strip().rstrip("/") for o in self.origins_edit.text().split(",") if o.strip()]
        self._commit(allowed_origins=origins)

    def _commit_edits(self) -> None:
        """Take edits not finished yet (a start from code, or by key, comes before their editingFinished)."""
        self._commit_custom_address()
        self._commit_origins()
        for spin in (self.port_spin, self.idle_spin):
            spin.interpretText()

    # -- start and stop -------------------------------------------------------------------------------
    @property
    def server(self) -> LocalServer | None:
        """The running server; None while stopped, starting or stopping."""
        return self._server

    def _toggle(self) -> None:
        if self._server is not None:
            self.stop_server()
        else:
            self.start_server()

    def start_server(self) -> None:
        if self._server is not None or self._busy or self._closed:
            return
        self._launch(None)

    def restart_server(self) -> None:
        """Stop and start again with the current settings and key (or just start when stopped)."""
        if self._busy or self._closed:
            return
        old, self._server = self._server, None
        self._launch(old)

    def _launch(self, old: LocalServer | None) -> None:
        self._commit_edits()
        config, generation = self._config, self._key_generation
        self._busy, self._failure = ("restarting" if old else "starting"), None
        self._show_state()
        self._worker.run(lambda: self._start_job(config, old),
                         lambda started: self._started(started, config, generation),
                         lambda exc: self._start_failed(exc, old is not None))

    def _start_job(self, config: ServerConfig, old: LocalServer | None) -> tuple[LocalServer, str | None]:
        """On the worker: stop the old server, read the key, start. The key never leaves this thread's locals."""
        if old is not None:
            self._stop_job(old)
        key = self._key_store().get()
        server = LocalServer(self.client, config, key, on_log=lambda e: self._entry_arrived.emit(_redacted(e, key)))
        server.start()
        with self._live_lock:
            self._live.add(server)
        return server, (_lan_address() if config.host in _WILDCARDS else None)

    def _stop_job(self, server: LocalServer) -> None:
        with self._live_lock:
            self._live.discard(server)
        server.stop()

    def _started(self, started: tuple[LocalServer, str | None], config: ServerConfig, generation: int) -> None:
        if self._closed:
            return  # shutdown has stopped it already
        self._server, self._lan = started
        self._busy = ""
        self._applied = (config.to_dict(), generation)
        self._show_state()
        self._refresh()
        self.running_changed.emit(True, self._server.url)
        server = self._server
        self._worker.run(server.models.models, self._got_models, lambda _exc: None)

    def _start_failed(self, exc: Exception, was_running: bool) -> None:
        if self._closed:
            return
        self._busy = ""
        if isinstance(exc, DesktopLLMError):
            self._failure = (exc.message, exc.hint or "")
        else:
            self._failure = (f"The server could not start: {exc}", "")
        self._show_state()
        self._refresh()
        if was_running:
            self.running_changed.emit(False, "")

    def stop_server(self) -> None:
        server = self._server
        if server is None or self._busy:
            return
        self._server, self._busy, self._failure = None, "stopping", None
        self._show_state()
        # httpd.shutdown waits for the serving loop's next poll: not on the GUI thread.
        self._worker.run(lambda: self._stop_job(server), lambda _r: self._stopped(), lambda _exc: self._stopped())

    def _stopped(self) -> None:
        if self._closed:
            return
        self._busy = ""
        self._show_state()
        self._refresh()
        self.running_changed.emit(False, "")

    def shutdown(self) -> None:
        """Stop the server (the window is closing). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._worker.shutdown()  # lets a start or stop under way finish first
        with self._live_lock:
            live, self._live = list(self._live), set()
        for server in live:
            server.stop()
        if self._server is not None:
            self._server = None
            self.running_changed.emit(False, "")

    def _got_models(self, models: list[Any]) -> None:
        self._model_id = models[0].id if models else BUNDLED_ID
        self._show_examples()

    # -- what the user sees ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Everything that follows from the settings: the address warning, restart notice and examples."""
        mask = self._key_state[0] if self._key_state else None
        problem = self._config.problem("key" if mask else None)
        self.address_problem.setText(f"<span style='color:{_colour('warn')}'>{html.escape(problem)}</span>"
                                     if problem else "")
        self.address_problem.setVisible(bool(problem))
        wanted = (self._config.to_dict(), self._key_generation)
        self.restart_bar.setVisible(self._server is not None and not self._busy and wanted != self._applied)
        self._show_examples()

    def _show_state(self) -> None:
        server, busy, failure = self._server, self._busy, self._failure
        self.toggle_button.setText({"starting": "Starting…", "restarting": "Restarting…", "stopping": "Stopping…"}
                                   .get(busy, "Stop server" if server else "Start server"))
        self.toggle_button.setEnabled(not busy and not self._closed)
        self.restart_button.setEnabled(not busy)
        self._style_toggle(primary=server is None)
        self.copy_url_button.setVisible(server is not None)
        hint = ""
        if busy:
            status = f"{busy.capitalize()} the server…"
        elif server is not None:
            dot = f"<span style='color:{_colour('ok')}'>●</span>"
            status = f"{dot} Running at <b>{html.escape(server.url)}</b>"
            access = "an API key is required" if server.api_key else "no API key is needed"
            hint = f"Any model in the library can be named; {access}."
            if server.config.host in _WILDCARDS:
                here = _with_host(server.url, server.config.host, _WILDCARDS[server.config.host])
                elsewhere = _with_host(server.url, server.config.host, self._lan) if self._lan else ""
                hint = (f"On this computer use {html.escape(here)}"
                        + (f"; other machines use {html.escape(elsewhere)}" if elsewhere else "") + f". {hint}")
        elif failure is not None:
            status = f"<span style='color:{_colour('error')}'>{html.escape(failure[0])}</span>"
            hint = html.escape(failure[1])
        else:
            status = "○ Stopped"
            hint = "Start the server to let other programs use this app's models through the OpenAI API."
        self.status_label.setText(status)
        # A URL stays on one line with Copy right after it; a long error wraps across the header instead.
        self.status_label.setWordWrap(server is None)
        self._status_row.setStretchFactor(self.status_label, 0 if server is not None else 1)
        self._status_row.setStretch(2, 1 if server is not None else 0)
        self.status_hint.setText(hint)
        self.status_hint.setVisible(bool(hint))

    def _style_toggle(self, primary: bool) -> None:
        # Start is the page's main action: the theme's accent colour; Stop: a plain button.
        palette = QPalette(self.palette())
        if primary:  # not for the disabled look: "Starting…" must read as unavailable
            for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
                palette.setColor(group, QPalette.ColorRole.Button, palette.color(QPalette.ColorRole.Highlight))
                palette.setColor(group, QPalette.ColorRole.ButtonText,
                                 palette.color(QPalette.ColorRole.HighlightedText))
        self.toggle_button.setPalette(palette)

    def _base_url(self) -> str:
        """The URL a program on this computer uses: the running server's, else the one the settings give."""
        if self._server is not None:
            host = self._server.config.host
            return _with_host(self._server.url, host, _WILDCARDS.get(host, host))
        host = _bracketed(_WILDCARDS.get(self._config.host, self._config.host))
        return f"http://{host}:{self._config.port or '<port>'}/v1"

    def _show_examples(self) -> None:
        url, model = self._base_url(), self._model_id
        keyed = bool(self._key_state and self._key_state[0])
        self.endpoints_label.setText(
            f"Base URL: <code>{html.escape(url)}</code>"
            "<table cellspacing='0' cellpadding='2' style='margin-top:4px'>"
            "<tr><td><code>GET&nbsp;</code></td><td><code>/v1/models</code></td><td>the library's models</td></tr>"
            "<tr><td><code>POST</code></td><td><code>/v1/chat/completions</code></td><td>chat</td></tr>"
            "<tr><td><code>POST</code></td><td><code>/v1/completions</code></td><td>plain text</td></tr>"
            "</table>Streaming, stop, seed, logprobs and JSON-schema replies work as in OpenAI's API.")
        auth = f'  -H "Authorization: Bearer ${KEY_ENV}" \\\n' if keyed else ""
        self.curl_text.setPlainText(
            f"curl {url}/chat/completions \\\n"
            '  -H "Content-Type: application/json" \\\n'
            f"{auth}"
            f"  -d '{{\"model\": \"{model}\",\n"
            '       "messages": [{"role": "user", "content": "Hello!"}]}\'')
        key = f'os.environ["{KEY_ENV}"]' if keyed else '"no-key"'
        note = "" if keyed else "# The server has no key set, so any api_key will do.\n"
        self.python_text.setPlainText(
            "import os\nfrom openai import OpenAI\n\n"
            f'{note}client = OpenAI(base_url="{url}",\n                api_key={key})\n'
            "reply = client.chat.completions.create(\n"
            f'    model="{model}",\n'
            '    messages=[{"role": "user", "content": "Hello!"}],\n)\n'
            "print(reply.choices[0].message.content)")

    def _copy(self, text: str) -> None:
        if text:
            QGuiApplication.clipboard().setText(text)

    # -- the API key (keyring work on the worker thread) ----------------------------------------------
    def _key_store(self) -> ServerKeyStore:
        if self._store is None:
            from desktop_llm.server.key_store import ServerKeyStore

            self._store = ServerKeyStore()
        return self._store

    def _read_key_state(self) -> tuple[str | None, bool, str | None]:
        from desktop_llm.hub.token_store import TokenStore

        store = self._key_store()
        key = store.get()
        return (TokenStore.mask(key) if key else None), store.secure, store.problem

    def _show_key_state(self, state: tuple[str | None, bool, str | None] | None) -> None:
        if state is None:
            return
        self._key_state = mask, secure, problem = state
        self.clear_key_button.setEnabled(mask is not None)
        self.save_key_button.setText("Replace key" if mask else "Save key")
        if mask is None:
            text = "No key set: any program on this computer can call the server."
        else:
            where = "kept in the system keyring" if secure else "kept for this session only"
            text = f"Key <b>{html.escape(mask)}</b> is set, {where}."
        if problem:
            text += f"<br><span style='color:{_colour('warn')}'>{html.escape(problem)}</span>"
        self.key_status.setText(text)
        self._refresh()

    def _key_failed(self, exc: Exception) -> None:
        self.key_status.setText(f"<span style='color:{_colour('error')}'>The key could not be read or saved: "
                                f"{html.escape(type(exc).__name__)}</span>")

    def _reveal_key(self, shown: bool) -> None:
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_key_button.setText("Hide" if shown else "Show")

    def _save_key(self) -> None:
        key = self.key_edit.text().strip()
        if not key:
            self.key_status.setText("Type a key first, or press Generate for a random one.")
            return
        self.key_edit.clear()  # a typed key leaves the widget; only its mask is shown from now on
        self._set_key(key)

    def _generate_key(self) -> None:
        # Saved at once, and left visible in the field so it can be copied into the programs that call.
        key = f"sk-local-{secrets.token_urlsafe(24)}"
        self.key_edit.setText(key)
        self.show_key_button.setChecked(True)
        self._set_key(key)

    def _clear_key(self) -> None:
        self.key_edit.clear()
        self._set_key(None)

    def _set_key(self, key: str | None) -> None:
        self._key_generation += 1

        def job() -> tuple[str | None, bool, str | None]:
            store = self._key_store()
            if key:
                store.set(key)
            else:
                store.clear()
            return self._read_key_state()

        self._worker.run(job, self._show_key_state, self._key_failed)

    def _copy_key(self) -> None:
        typed = self.key_edit.text().strip()
        if typed:
            self._copy(typed)
        else:
            self._worker.run(lambda: self._key_store().get(), lambda key: self._copy(key or ""), self._key_failed)
