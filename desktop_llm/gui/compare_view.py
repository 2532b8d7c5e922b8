"""The Playground's Compare tab: one prompt under two to four configurations side by side.

Each column picks sampling settings (the current ones or a preset) and a model. "Run all" draws one
seed for every column, then runs the columns one after another through the single engine; a column
on another model first loads it. The work is ordered so the fewest loads happen (columns on the
loaded model first, then one group per model), while each result stays in its own column. Every
step is asynchronous: the GUI thread only starts work and receives callbacks, it never waits.

Restoring the model that was loaded before is the window's job (``restore_model``), so the app's
own record of the loaded model (model button, per-model preset) stays right.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.model_library import effective_load_options
from desktop_llm.core.models import ModelRef, list_local_models
from desktop_llm.core.presets import BUILTIN_PRESETS, Preset
from desktop_llm.core.reply_stats import reply_figures
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.settings import Settings, load_settings
from desktop_llm.gui.background import Background
from desktop_llm.gui.engine_bridge import QtEngine, SideRun

MIN_COLUMNS = 2
MAX_COLUMNS = 4
START_COLUMNS = 3  # three at once, so a first-time user sees the idea without adding any
CURRENT_SETTINGS = "Current settings"
LOADED_MODEL = "Loaded model"
# Defaults for new columns: the current settings against presets whose output differs visibly.
_DEFAULT_CHOICES = (CURRENT_SETTINGS, "Deterministic", "Creative", "Balanced")
_ERROR_COLOR = "#d9534f"  # readable on light and dark palettes
_SEED_LIMIT = 2**31  # well inside SamplingParams' range, and short enough to read and retype


class CompareColumn(QFrame):
    """One configuration: settings and model pickers, the streamed text and a stats line."""

    remove_requested = Signal(object)  # this column

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.result: dict[str, Any] | None = None  # the done event of the last run
        self.error: str | None = None  # what went wrong in the last run, for the user
        # idle, waiting, loading, running, done, stopped, error
        self.state = "idle"

        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        self.remove_button = QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setToolTip("Remove this column")
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.remove_button)

        self.settings_combo = QComboBox()
        self.settings_combo.setToolTip("Sampling settings for this column: the panel's current ones or a preset")
        self.settings_combo.addItem(CURRENT_SETTINGS, None)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The model for this column; another model than the loaded one is loaded "
                                    "for its run")
        self.model_combo.addItem(LOADED_MODEL, None)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(12)

        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setPlaceholderText("The output appears here.")
        self.stats = QLabel("")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.settings_combo)
        layout.addWidget(self.model_combo)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.stats)

    # -- what the user picked ---------------------------------------------------------------------
    @property
    def preset(self) -> Preset | None:
        """The chosen preset, or None for the current settings."""
        return self.settings_combo.currentData()

    @property
    def model(self) -> ModelRef | None:
        """The chosen model, or None for whichever model is loaded."""
        return self.model_combo.currentData()

    def set_presets(self, presets: list[Preset], choice: str | None = None) -> None:
        """Offer ``presets``; keep the current choice by name, or pick ``choice``."""
        keep = choice or self.settings_combo.currentText()
        self.settings_combo.blockSignals(True)
        self.settings_combo.clear()
        self.settings_combo.addItem(CURRENT_SETTINGS, None)
        for preset in presets:
            self.settings_combo.addItem(preset.name, preset)
            if preset.description:
                self.settings_combo.setItemData(self.settings_combo.count() - 1, preset.description,
                                                Qt.ItemDataRole.ToolTipRole)
        self.settings_combo.setCurrentIndex(max(0, self.settings_combo.findText(keep)))
        self.settings_combo.blockSignals(False)

    def set_models(self, models: list[ModelRef]) -> None:
        """Offer ``models``; keep the current choice by id. A model that cannot load is listed but disabled."""
        keep = self.model.id if self.model is not None else None
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(LOADED_MODEL, None)
        for ref in models:
            combo.addItem(ref.name, ref)
            row = combo.count() - 1
            combo.setItemData(row, ref.error or ref.path, Qt.ItemDataRole.ToolTipRole)
            if ref.error:
                combo.model().item(row).setEnabled(False)
            if ref.id == keep:
                combo.setCurrentIndex(row)
        combo.blockSignals(False)

    # -- what the column shows --------------------------------------------------------------------
    def reset(self, state: str, message: str) -> None:
        self.result = None
        self.error = None
        self.text.clear()
        self.show_state(state, message)

    def show_state(self, state: str, message: str, error: bool = False) -> None:
        self.state = state
        self.stats.setText(message)
        self.stats.setStyleSheet(f"color: {_ERROR_COLOR};" if error else "")

    def show_error(self, message: str) -> None:
        self.error = message
        self.show_state("error", message, error=True)

    def append(self, piece: str) -> None:
        # Insert at the end without moving the view, unless the user is already following the end.
        bar = self.text.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(piece)
        if follow:
            bar.setValue(bar.maximum())

    def show_result(self, done: dict[str, Any], model_name: str, settings_name: str) -> None:
        self.result = done
        finish = done.get("finish_reason") or "?"
        figures = reply_figures(done)
        origin = f"{model_name} · {settings_name} · seed {done.get('seed')}"
        self.show_state("stopped" if finish == "cancelled" else "done", " · ".join(figures) + "\n" + origin)


@dataclass
class _Job:
    """One column's run in a Run all: what to generate with and on which model."""

    column: CompareColumn
    model: ModelRef
    params: SamplingParams
    settings_name: str


class CompareView(QWidget):
    """Runs one prompt under several configurations, one after another on the single engine."""

    status = Signal(str)  # progress and outcome, for the window's status bar
    finished = Signal()  # every column ran, failed or was stopped
    restore_model = Signal(object)  # the ModelRef loaded before Run all: the window loads it back

    def __init__(self, engine: QtEngine, background: Background, source: Callable[[], dict[str, Any]],
                 params: Callable[[], SamplingParams], presets: Callable[[], list[Preset]] | None = None,
                 parent: QWidget | None = None, settings: Callable[[], Settings] | None = None) -> None:
        """``source()``: the prompt part of a request ({"prompt": ...} or {"messages": [...]}).
        ``params()``: the parameter panel's current settings. ``presets()``: every preset by name (read
        on the disk thread). ``settings()``: the app settings for model load options (default: read
        from disk when a run needs to load a model).
        """
        super().__init__(parent)
        self.engine = engine
        self.background = background
        self._source = source
        self._params = params
        self._presets_source = presets or (lambda: list(BUILTIN_PRESETS))
        self._settings = settings
        self.columns: list[CompareColumn] = []
        self._presets: list[Preset] = []
        self._presets_seen = False
        self._models: list[ModelRef] = []
        self._engine_state = "ready"
        self._seed: int | None = None
        # What the engine holds after this view loaded a model, until the app loads or unloads one
        # itself: engine.loaded_info only follows the app's own loads.
        self._held: tuple[str | None] | None = None
        self._reset_run()

        self.run_button = QPushButton("Run all")
        self.run_button.setToolTip("Run the prompt in every column, one after another, with the same seed")
        self.run_button.clicked.connect(self.run_all)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the running column and skip the rest")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.add_button = QPushButton("Add column")
        self.add_button.clicked.connect(self.add_column)
        self.notice = QLabel("")  # the shared seed, or why a run could not start
        self.notice.setWordWrap(True)
        self.notice.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar = QHBoxLayout()
        bar.addWidget(self.run_button)
        bar.addWidget(self.stop_button)
        bar.addWidget(self.add_button)
        bar.addWidget(self.notice, 1)

        self._columns_layout = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addLayout(self._columns_layout, 1)

        for _ in range(START_COLUMNS):
            self.add_column()
        engine.state_changed.connect(self._on_engine_state)
        engine.loaded.connect(self._forget_held)
        engine.unloaded.connect(self._forget_held)
        self.refresh_presets()
        self.refresh_models()

    def _reset_run(self) -> None:
        self._running = False
        self._stopping = False
        self._jobs: list[_Job] = []
        self._job: _Job | None = None
        self._side_run: SideRun | None = None
        self._loading = False
        self._original: ModelRef | None = None  # loaded when Run all started
        self._loaded_id: str | None = None  # what the engine holds now, as far as this run knows
        self._load_options: dict[str, tuple[str, dict[str, Any]] | str] = {}  # model id -> options or error
        self._failed_loads: dict[str, str] = {}  # model id -> why it did not load
        self._request: dict[str, Any] = {}
        self._started_at = 0.0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def seed(self) -> int | None:
        """The seed every column of the last Run all used."""
        return self._seed

    # -- lists of presets and models (read off the GUI thread) --------------------------------------
    def refresh_presets(self) -> None:
        """Read the presets again (a user may have saved one) on the disk thread."""
        self.background.run(self._presets_source, self._set_presets,
                            lambda exc: self._show_notice(f"Could not read the presets: {exc}", error=True))

    def refresh_models(self) -> None:
        """List the local models again (after a download or import) on the disk thread."""
        self.background.run(list_local_models, self._set_models,
                            lambda exc: self._show_notice(f"Could not list the models: {exc}", error=True))

    def _set_presets(self, presets: list[Preset]) -> None:
        if not shiboken6.isValid(self):
            return
        self._presets = list(presets)
        first = not self._presets_seen
        self._presets_seen = True
        for i, column in enumerate(self.columns):
            # On the first list, give the starting columns different settings so they show the idea.
            column.set_presets(self._presets, self._default_choice(i) if first else None)

    def _set_models(self, models: list[ModelRef]) -> None:
        if not shiboken6.isValid(self):
            return
        self._models = list(models)
        for column in self.columns:
            column.set_models(self._models)

    def _default_choice(self, index: int) -> str:
        names = {p.name for p in self._presets} | {CURRENT_SETTINGS}
        used = {c.settings_combo.currentText() for c in self.columns[:index]}
        for name in _DEFAULT_CHOICES:
            if name in names and name not in used:
                return name
        return CURRENT_SETTINGS

    # -- columns --------------------------------------------------------------------------------------
    def add_column(self) -> CompareColumn | None:
        """Add a column (up to four); returns it, or None when there are four already."""
        if len(self.columns) >= MAX_COLUMNS or self._running:
            return None
        column = CompareColumn(self)
        column.set_presets(self._presets, self._default_choice(len(self.columns)) if self._presets_seen else None)
        column.set_models(self._models)
        column.remove_requested.connect(self.remove_column)
        self.columns.append(column)
        self._columns_layout.addWidget(column, 1)
        self._update_controls()
        return column

    def remove_column(self, column: CompareColumn) -> None:
        """Remove ``column`` (never below two, never during a run)."""
        if len(self.columns) <= MIN_COLUMNS or self._running or column not in self.columns:
            return
        self.columns.remove(column)
        self._columns_layout.removeWidget(column)
        column.deleteLater()
        self._update_controls()

    def _update_controls(self) -> None:
        running = self._running
        for i, column in enumerate(self.columns, 1):
            column.title.setText(f"Column {i}")
            column.remove_button.setEnabled(not running and len(self.columns) > MIN_COLUMNS)
            column.settings_combo.setEnabled(not running)
            column.model_combo.setEnabled(not running)
        self.add_button.setEnabled(not running and len(self.columns) < MAX_COLUMNS)
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running and not self._stopping)

    def _show_notice(self, text: str, error: bool = False) -> None:
        if not shiboken6.isValid(self):
            return
        self.notice.setText(text)
        self.notice.setStyleSheet(f"color: {_ERROR_COLOR};" if error else "")
        if error:
            self.status.emit(text)

    def _on_engine_state(self, state: str) -> None:
        self._engine_state = state

    def _forget_held(self, *_args: Any) -> None:
        self._held = None  # the app loaded or unloaded a model: engine.loaded_info is right again

    # -- running ----------------------------------------------------------------------------------------
    def run_all(self) -> None:
        """Run every column with one shared seed, one after another; returns at once."""
        if self._running:
            return
        if self.engine.busy or self._engine_state == "loading":
            self._show_notice("The engine is busy (a reply or a model load): wait for it to end, then run "
                              "again.", error=True)
            return
        try:
            prompt_part = dict(self._source())
            base = self._params()
        except DesktopLLMError as exc:
            self._show_notice(str(exc), error=True)
            return
        self._reset_run()
        # One seed for every column, so the columns differ only by what they were set to differ by.
        seed = base.seed if base.seed is not None else random.randrange(_SEED_LIMIT)
        self._seed = seed
        info = self.engine.loaded_info
        self._original = ModelRef.from_dict(info["model"]) if info and info.get("model") else None
        self._loaded_id = self._held[0] if self._held else (self._original.id if self._original else None)
        self._request = prompt_part

        jobs: list[_Job] = []
        for column in self.columns:
            column.reset("waiting", "Waiting…")
            preset = column.preset
            model = column.model or self._original
            if model is None:
                column.show_error("No model is loaded: pick a model for this column, or load one first.")
                continue
            try:
                params = (preset.apply(base) if preset else base).with_updates(seed=seed)
            except DesktopLLMError as exc:
                column.show_error(f"These settings cannot be used: {exc}")
                continue
            jobs.append(_Job(column, model, params, preset.name if preset else CURRENT_SETTINGS))
        # Fewest loads: the loaded model's columns first, then one group per model, in column order.
        first_seen: dict[str, int] = {}
        for i, job in enumerate(jobs):
            first_seen.setdefault(job.model.id, i)
        jobs.sort(key=lambda j: (j.model.id != self._loaded_id, first_seen[j.model.id]))
        self._jobs = jobs
        self._running = True
        self._started_at = time.monotonic()
        self._update_controls()
        self._show_notice(f"Seed {seed} for every column")

        others = {j.model.id: j.model for j in jobs if j.model.id != self._loaded_id}
        if not others:
            self._next()
            return
        self.status.emit("Compare: reading the load settings…")
        settings_source = self._settings

        def read_options() -> dict[str, tuple[str, dict[str, Any]] | str]:
            # Per-model defaults live on disk: read here, on the disk thread, for every model at once.
            settings = settings_source() if settings_source else load_settings()
            found: dict[str, tuple[str, dict[str, Any]] | str] = {}
            for model_id, ref in others.items():
                try:
                    found[model_id] = effective_load_options(settings, ref)
                except (OSError, DesktopLLMError) as exc:
                    found[model_id] = f"Could not read the load settings for {ref.name}: {exc}"
            return found

        def options_read(found: dict[str, tuple[str, dict[str, Any]] | str]) -> None:
            if shiboken6.isValid(self):
                self._load_options = found
                self._next()

        def options_failed(exc: Exception) -> None:
            if shiboken6.isValid(self):
                self._load_options = {mid: f"Could not read the settings: {exc}" for mid in others}
                self._next()

        self.background.run(read_options, options_read, options_failed)

    def stop(self) -> None:
        """Stop the running column and skip the ones still waiting; ``finished`` follows."""
        if not self._running or self._stopping:
            return
        self._stopping = True
        for job in self._jobs:
            job.column.show_state("stopped", "Stopped before it ran.")
        self._jobs = []
        self._update_controls()
        self.status.emit("Compare: stopping…")
        if self._side_run is not None:
            self._side_run.cancel()  # its done event (finish reason "cancelled") ends the run
        # A load in flight cannot be cancelled: its callback ends the run.

    def _next(self) -> None:
        """Start the next column's work, or end the run. Called only from GUI-thread callbacks."""
        self._job = None
        self._side_run = None
        while self._jobs and not self._stopping:
            job = self._jobs.pop(0)
            if job.model.id in self._failed_loads:
                # Its model already failed to load in this run: do not try (and wait) again.
                job.column.show_error(self._failed_loads[job.model.id])
                continue
            self._job = job
            if job.model.id != self._loaded_id:
                self._load(job)
            else:
                self._start(job)
            return
        self._finish()

    def _load(self, job: _Job) -> None:
        ref = job.model
        options = self._load_options.get(ref.id, ("auto", {}))
        if isinstance(options, str):
            self._failed_loads[ref.id] = options
            job.column.show_error(options)
            self._next()
            return
        backend, load_options = options
        job.column.show_state("loading", f"Loading {ref.name}…")
        self.status.emit(f"Compare: loading {ref.name} for {job.column.title.text().lower()}…")
        self._loading = True

        def loaded(_info: Any) -> None:
            self._loading = False
            self._loaded_id = ref.id
            self._held = (ref.id,)
            if not shiboken6.isValid(self):
                return
            if self._stopping:
                job.column.show_state("stopped", "Stopped before it ran.")
                self._next()
            else:
                self._start(job)

        def failed(message: str) -> None:
            self._loading = False
            # The engine unloads the old model before loading: after a failure nothing is loaded.
            self._loaded_id = None
            self._held = (None,)
            if not shiboken6.isValid(self):
                return
            text = f"Could not load {ref.name}: {message}"
            self._failed_loads[ref.id] = text
            job.column.show_error(text)
            self._next()

        self.engine.call(lambda client: client.load(ref, backend=backend, options=load_options), loaded, failed,
                         busy=True)

    def _start(self, job: _Job) -> None:
        column = job.column
        column.show_state("running", "Running…")
        done_count = sum(1 for c in self.columns if c.state in ("done", "error", "stopped"))
        self.status.emit(f"Compare: running column {self.columns.index(column) + 1} "
                         f"({done_count + 1} of {len(self.columns)})…")
        request = dict(self._request, params=job.params, alternatives=0)

        def on_token(event: dict[str, Any]) -> None:
            if shiboken6.isValid(column):
                column.append(event.get("text", ""))

        def on_done(event: dict[str, Any]) -> None:
            if not shiboken6.isValid(self):
                return
            # The done event's text is the whole reply: authoritative even if a token was dropped.
            if isinstance(event.get("text"), str) and column.text.toPlainText() != event["text"]:
                column.text.setPlainText(event["text"])
            column.show_result(event, job.model.name, job.settings_name)
            self._next()

        def on_error(message: str) -> None:
            if not shiboken6.isValid(self):
                return
            column.show_error(message)
            self._next()

        self._side_run = self.engine.start_stream(request, on_token, on_done, on_error)

    def _finish(self) -> None:
        stopped = self._stopping
        self._running = False
        self._stopping = False
        self._update_controls()
        seconds = time.monotonic() - self._started_at
        failed = sum(1 for c in self.columns if c.state == "error")
        summary = "Compare stopped." if stopped else f"Compare finished in {seconds:.1f} s."
        if failed:
            summary += f" {failed} column{'s' if failed > 1 else ''} failed."
        original = self._original
        if original is not None and self._loaded_id != original.id:
            # Another model is in the engine now: the window loads the user's model back.
            summary += f" Loading {original.name} back…"
            self.restore_model.emit(original)
        elif original is None and self._loaded_id is not None:
            # No model was loaded before: unload again, so the app's "no model" stays true.
            self.engine.unload()
        self.status.emit(summary)
        self.finished.emit()
