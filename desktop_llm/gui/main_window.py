"""The main window: a sidebar of pages (Chat, Playground, Models, Fine-tune, Settings), the model in use
with its load progress, and a status bar with the model, context use, the last reply's speed and the engine's state.
"""

from __future__ import annotations

import gc
import html
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.model_library import effective_load_options, load_model_defaults
from desktop_llm.core.models import ModelRef, list_local_models, resolve_model
from desktop_llm.core.reply_stats import reply_figures
from desktop_llm.core.settings import Settings, save_settings
from desktop_llm.gui.chat_page import ChatPage
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.finetune_page import FinetunePage
from desktop_llm.gui.hub_services import HubServices
from desktop_llm.gui.hub_settings_group import HubSettingsGroup
from desktop_llm.gui.markdown_html import warm_up as markdown_warm_up
from desktop_llm.gui.model_picker import ModelPicker
from desktop_llm.gui.models_page import ModelsPage
from desktop_llm.gui.playground_page import PlaygroundPage
from desktop_llm.gui.remote_providers_group import RemoteProvidersGroup
from desktop_llm.gui.server_page import ServerPage
from desktop_llm.gui.settings_page import SettingsPage
from desktop_llm.gui.theme import apply_theme, is_dark, theme_notifier

HUB_START_DELAY_MS = 3000
_STATE_TEXT = {
    "stopped": "Engine: stopped", "starting": "Engine: starting…", "ready": "Engine: ready",
    "loading": "Engine: loading a model…", "busy": "Engine: writing a reply…",
    "crashed": "Engine: crashed, restarting…", "restarting": "Engine: restarting, reloading the model…",
}


def _find_model(model_id: str) -> ModelRef:
    """A local model by id, name or path; or a remote provider's model by its remote id."""
    if model_id.startswith("remote:"):
        from desktop_llm.remote.library import remote_ref  # only when a remote model is asked for

        return remote_ref(model_id)
    return resolve_model(model_id)


class MainWindow(QMainWindow):
    def __init__(self, engine: QtEngine, persistence: ChatPersistence, settings: Settings,
                 hub: HubServices | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.persistence = persistence
        self.background = persistence.background
        self.settings = settings
        self._model: ModelRef | None = None  # the model loaded or loading
        self._picker: ModelPicker | None = None
        self.setWindowTitle("desktop_llm")
        self.resize(1200, 760)

        self.nav = QListWidget()
        self.nav.setObjectName("pageNav")
        self.nav.setFixedWidth(120)
        self.nav.setStyleSheet("QListWidget#pageNav { border: none; } QListWidget#pageNav::item { padding: 9px 10px; }")
        self.pages = QStackedWidget()
        self.chat = ChatPage(engine, persistence, settings)
        self.hub = hub or HubServices(settings, parent=self)
        self.models_page = ModelsPage(self.hub, self.background)
        self.settings_page = SettingsPage(settings, [])
        self.hub_settings = HubSettingsGroup(self.hub)
        self.settings_page.add_group(self.hub_settings, self.hub_settings.changed)
        self.remote_providers = RemoteProvidersGroup()
        self.settings_page.add_group(self.remote_providers)
        self.remote_providers.providers_changed.connect(lambda: self._picker is not None and self._picker.refresh())
        self.finetune_page = FinetunePage(self.background)
        self.playground = PlaygroundPage(engine, self.background)
        # The server answers from the window's own engine (the local one, whatever the window has loaded).
        self.server_page = ServerPage(engine.client, settings, self._on_server_settings)
        pages = (("Chat", self.chat), ("Playground", self.playground), ("Models", self.models_page),
                 ("Fine-tune", self.finetune_page), ("Server", self.server_page), ("Settings", self.settings_page))
        for name, page in pages:
            self.nav.addItem(name)
            self.pages.addWidget(page)
        self.nav.setCurrentRow(0)
        self.nav.currentRowChanged.connect(self.pages.setCurrentIndex)

        self.model_button = QPushButton("No model loaded")
        self.model_button.setObjectName("modelButton")
        self.model_button.setToolTip("Pick a model (Ctrl+K)")
        self.load_bar = QProgressBar()
        self.load_bar.setObjectName("loadProgress")
        self.load_bar.setRange(0, 100)
        self.load_bar.setMaximumWidth(220)
        self.load_bar.setVisible(False)
        self.unload_button = QPushButton("Unload")
        self.unload_button.setObjectName("unloadButton")
        self.unload_button.setToolTip("Free the memory the model uses")
        self.unload_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.addWidget(self.model_button)
        bar.addWidget(self.load_bar)
        bar.addWidget(self.unload_button)
        bar.addStretch(1)
        right = QVBoxLayout()
        right.addLayout(bar)
        right.addWidget(self.pages, 1)
        body = QWidget()
        outer = QHBoxLayout(body)
        outer.addWidget(self.nav)
        outer.addLayout(right, 1)
        self.setCentralWidget(body)

        self.model_status = QLabel("No model")
        self.model_status.setObjectName("modelStatus")
        self.context_status = QLabel("")
        self.context_status.setObjectName("contextStatus")
        self.reply_stats = QLabel("")
        self.reply_stats.setObjectName("replyStats")
        self.engine_state = QLabel(_STATE_TEXT["stopped"])
        self.engine_state.setObjectName("engineState")
        status = self.statusBar()
        status.addWidget(self.model_status)
        status.addWidget(self.context_status)
        status.addPermanentWidget(self.reply_stats)
        self.server_status = QLabel("")
        self.server_status.setObjectName("serverStatus")
        self.server_status.setToolTip("The local OpenAI-compatible server (the Server page)")
        status.addPermanentWidget(self.server_status)
        status.addPermanentWidget(self.engine_state)

        self.model_button.clicked.connect(self.open_model_picker)
        self.unload_button.clicked.connect(self.engine.unload)
        QShortcut(QKeySequence("Ctrl+K"), self, activated=self.open_model_picker)
        QShortcut(QKeySequence("Ctrl+N"), self, activated=self._new_chat)
        QShortcut(QKeySequence("Ctrl+F"), self, activated=self._search)

        engine.state_changed.connect(self._on_state)
        engine.load_progress.connect(self._on_load_progress)
        engine.loaded.connect(self._on_loaded)
        engine.load_failed.connect(self._on_load_failed)
        engine.unloaded.connect(self._on_unloaded)
        self.chat.context_changed.connect(self._on_context)
        self.chat.reply_done.connect(self._on_reply_done)
        self.chat.model_wanted.connect(self._on_model_wanted)
        self.chat.pick_model_requested.connect(self.open_model_picker)
        self.chat.status_message.connect(lambda text: status.showMessage(text, 5000))
        self.chat.transcript.note_action.connect(self._on_note_action)
        self.models_page.load_requested.connect(self._load_from_models_page)
        # Whether there is a GPU and its VRAM: the engine knows (the app never imports torch). Asked when the
        # Models page is first shown, not at start, where it would slow the first model load.
        self.models_page.first_shown.connect(lambda: engine.device_report(self.hub.set_device_report))
        self.models_page.status.connect(lambda text: status.showMessage(text, 8000))
        # A download, import or delete changes what Settings offers as the default model.
        self.models_page.library.models_changed.connect(self.settings_page.set_models)
        self.finetune_page.chat_requested.connect(self.chat_with_model)
        self.finetune_page.models_changed.connect(self.models_page.library.refresh)
        self.finetune_page.status.connect(lambda text: status.showMessage(text, 8000))
        self.playground.status.connect(lambda text: status.showMessage(text, 8000))
        self.playground.send_to_chat.connect(self._chat_from_playground)
        self.playground.restore_model.connect(self.load_model)
        self.settings_page.changed.connect(self._on_settings_changed)
        self.server_page.running_changed.connect(
            lambda running, url: self.server_status.setText(f"Server: {url}" if running else ""))
        self.settings_page.reload_requested.connect(self.reload_model)
        theme_notifier().changed.connect(self.chat.set_dark)
        self.chat.set_dark(is_dark())
        # Everything made so far (modules, widgets) lives as long as the window: keep it out of the
        # cyclic GC's full collections, which otherwise stall the GUI ~45 ms mid-reply (measured).
        gc.freeze()
        self.background.run(markdown_warm_up, None, lambda _exc: None)
        self.background.run(list_local_models, self.settings_page.set_models, lambda _exc: None)
        # Not at once: the first model load and chat come first. Opening Models or Settings starts it sooner.
        QTimer.singleShot(HUB_START_DELAY_MS, self.hub.start)
        self.nav.currentRowChanged.connect(lambda row: row > 0 and self.hub.start())
        self.hub.start_failed.connect(lambda text: status.showMessage(f"The Hub features could not start: {text}"))

    # -- models -----------------------------------------------------------------------------------
    def load_default_model(self, spec: str | None = None) -> None:
        """Load ``spec`` (a model id, name or path) or the default model from Settings, off the GUI thread."""
        wanted = spec or self.settings.default_model
        self.background.run(lambda: resolve_model(wanted), self.load_model,
                            lambda exc: self._on_load_failed(str(exc)))

    def load_model(self, ref: ModelRef) -> None:
        if self.engine.busy:
            self.statusBar().showMessage("Stop the reply first (Esc), then pick the model again.", 5000)
            return
        self._model = ref
        self.model_button.setText(f"Loading {ref.name}…")
        self.load_bar.setValue(0)
        self.load_bar.setVisible(True)
        settings = self.settings

        def start(chosen: tuple[str, dict[str, Any], str | None]) -> None:
            backend, options, preset = chosen
            self.chat.set_model_preset(preset)
            self.engine.load(ref, backend=backend, options=options)

        def read() -> tuple[str, dict[str, Any], str | None]:
            backend, options = effective_load_options(settings, ref)
            return backend, options, load_model_defaults(ref.id).sampling_preset

        # Per-model defaults (context, GPU layers, backend, preset) come from disk: read off the GUI thread.
        self.background.run(read, start, lambda exc: self._on_load_failed(str(exc)))

    def _load_from_models_page(self, ref: ModelRef) -> None:
        self.load_model(ref)
        self._show_chat()

    def chat_with_model(self, path: str) -> None:
        """Load a model (a fine-tune's export) and open a new chat with it."""

        def found(ref: ModelRef) -> None:
            self.load_model(ref)
            self.chat.new_chat()
            self._show_chat()

        self.background.run(lambda: resolve_model(path), found,
                            lambda exc: self.statusBar().showMessage(f"Cannot open {path}: {exc}", 8000))

    def reload_model(self) -> None:
        if self._model is not None:
            self.load_model(self._model)

    def open_model_picker(self) -> None:
        if self._picker is None:
            self._picker = ModelPicker(self.background, parent=self)
            self._picker.chosen.connect(self.load_model)
            self._picker.unload_requested.connect(self.engine.unload)
        info = self.engine.loaded_info
        self._picker.set_loaded(info["model"]["id"] if info else None)
        self._picker.show()
        self._picker.raise_()
        self._picker.activateWindow()

    def _on_model_wanted(self, model_id: str) -> None:
        """A chat made with another model was opened: load that one, if it is still on this machine."""
        def found(ref: ModelRef) -> None:
            if ref.error:
                self.chat.transcript.add_note(f"This chat was made with {ref.name}, which cannot be loaded: "
                                              f"{ref.error}", error=True)
            elif not self.engine.busy and (self._model is None or self._model.id != ref.id):
                self.load_model(ref)

        def missing(exc: Exception) -> None:
            if model_id.startswith("remote:"):
                self.chat.transcript.add_note(f"This chat was made with {model_id}: {exc} Replies come from "
                                              "the loaded model.")
                return
            self.chat.transcript.add_note(f"This chat was made with a model that is not on this machine "
                                          f"({model_id}); replies come from the loaded model.")

        self.background.run(lambda: _find_model(model_id), found, missing)

    def _on_load_progress(self, stage: str, fraction: float) -> None:
        self.load_bar.setVisible(True)
        self.load_bar.setValue(int(fraction * 100))
        self.load_bar.setFormat(f"{stage} %p%")

    def _on_loaded(self, info: dict[str, Any]) -> None:
        name = info["model"]["name"]
        self.load_bar.setVisible(False)
        self.model_button.setText(f"{name}  ▾")
        self.unload_button.setEnabled(True)
        self.model_status.setText(f"<b>{html.escape(name)}</b> · {info['backend']} on {info['device']}")
        n_ctx = info.get("n_ctx")
        self.context_status.setText(f"context {n_ctx:,} tokens" if n_ctx else "context: as the server allows")
        self.chat.on_model_loaded(info)
        if self._picker is not None:
            self._picker.set_loaded(info["model"]["id"])
        self.models_page.library.set_loaded(info["model"]["id"])

    def _on_load_failed(self, message: str) -> None:
        self.load_bar.setVisible(False)
        self.model_button.setText("No model loaded")
        self.unload_button.setEnabled(False)
        self.model_status.setText("No model")
        self.chat.on_model_unloaded()
        self.chat.transcript.add_note(f"Could not load the model: {message}", error=True, action="retry-load",
                                      action_label="Retry")

    def _on_unloaded(self) -> None:
        self._model = None
        self.model_button.setText("No model loaded")
        self.unload_button.setEnabled(False)
        self.model_status.setText("No model")
        self.context_status.setText("")
        self.chat.on_model_unloaded()
        if self._picker is not None:
            self._picker.set_loaded(None)
        self.models_page.library.set_loaded(None)

    def _on_note_action(self, action: str) -> None:
        if action == "retry-load":
            self.chat.transcript.clear_notes()
            if self._model is not None:
                self.load_model(self._model)
            else:
                self.load_default_model()

    # -- status bar -------------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        self.engine_state.setText(_STATE_TEXT.get(state, f"Engine: {state}"))

    def _on_context(self, used: int, limit: int, exact: bool) -> None:
        approx = "" if exact else "≈ "
        self.context_status.setText(f"context {approx}{used:,} / {limit:,} tokens")

    def _on_reply_done(self, done: dict[str, Any]) -> None:
        self.reply_stats.setText(" · ".join(reply_figures(done, usage=False, finish=False)))

    # -- settings ---------------------------------------------------------------------------------
    def _on_settings_changed(self, settings: Settings) -> None:
        previous, self.settings = self.settings, settings
        self.background.run(lambda: save_settings(settings), None,
                            lambda exc: self.statusBar().showMessage(f"Could not save the settings: {exc}", 10000))
        if (settings.theme, settings.font_size) != (previous.theme, previous.font_size):
            app = QApplication.instance()
            if isinstance(app, QApplication):
                apply_theme(app, settings.theme, settings.font_size)
        self.chat.set_settings(settings)
        self.hub.set_settings(settings)
        self.hub_settings.show_settings(settings)
        self.server_page.set_settings(settings)

    def _on_server_settings(self, settings: Settings) -> None:
        # Saved from the Server page: the Settings page's copy must have them too, or its next save drops them.
        self.settings_page.set_settings(settings)
        self._on_settings_changed(settings)

    # -- pages ------------------------------------------------------------------------------------
    def nav_row(self, page: QWidget) -> int:
        return self.pages.indexOf(page)

    def show_page(self, page: QWidget) -> None:
        self.nav.setCurrentRow(self.nav_row(page))

    def _show_chat(self) -> None:
        self.show_page(self.chat)

    def _chat_from_playground(self, system_prompt: str | None, params: dict[str, Any], draft: str) -> None:
        self._show_chat()
        self.chat.start_from(system_prompt, params, draft)

    def _new_chat(self) -> None:
        self._show_chat()
        self.chat.new_chat()

    def _search(self) -> None:
        self._show_chat()
        self.chat.conversation_list.focus_search()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.chat.closing()
        self.server_page.shutdown()
        self.hub.shutdown()
        self.engine.shutdown()
        super().closeEvent(event)

