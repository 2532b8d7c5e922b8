"""The Fine-tune page: a wizard (model, data, method, review, training, export) and the history of runs.

Training runs in its own process and is followed through the run's history file, so the page can be
left and opened again, or the app closed and started again, while a run goes on.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import psutil
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef, list_local_models
from desktop_llm.core.units import format_bytes, format_duration
from desktop_llm.finetune import runs
from desktop_llm.finetune.config import TrainConfig
from desktop_llm.finetune.estimate import ModelShape, RunEstimate, estimate_run
from desktop_llm.gui.background import Background
from desktop_llm.gui.finetune_data_step import DataStep
from desktop_llm.gui.finetune_export_view import ExportView
from desktop_llm.gui.finetune_method_step import MethodStep
from desktop_llm.gui.finetune_train_view import TrainView

STEPS = ("1. Base model", "2. Data", "3. Method", "4. Review", "5. Training", "6. Export")
STEP_MODEL, STEP_DATA, STEP_METHOD, STEP_REVIEW, STEP_TRAIN, STEP_EXPORT = range(6)
# Fine-tuning needs the weights in PyTorch: a GGUF is converted (llama-shaped ones), a folder used as is.
_TRAINABLE_FORMATS = ("gguf", "hf")


def describe_model(ref: ModelRef) -> str:
    if not ref.parameters:
        size = "size unknown"
    elif ref.parameters < 1e9:
        size = f"{ref.parameters / 1e6:.0f} million weights"
    else:
        size = f"{ref.parameters / 1e9:.1f} billion weights"
    kind = "GGUF (converted once for training)" if ref.format == "gguf" else "safetensors folder"
    return f"{ref.name}\n{size} · {kind}"


class ModelStep(QWidget):
    changed = Signal()

    def __init__(self, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.background = background
        self.models: list[ModelRef] = []
        self.list = QListWidget()
        self.list.setObjectName("baseModels")
        self.list.setSpacing(2)
        self.note = QLabel("Pick the model to teach. Small models train in minutes on a CPU; a GPU (CUDA or "
                           "Apple Metal) is used automatically when there is one. Models from My Models and "
                           "the bundled one can be fine-tuned.")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.list, 1)
        self.list.currentRowChanged.connect(lambda _row: self.changed.emit())

    def refresh(self) -> None:
        self.background.run(list_local_models, self._fill, lambda _exc: None)

    def _fill(self, models: list[ModelRef]) -> None:
        keep = self.current().id if self.current() else None
        self.models = [m for m in models if m.format in _TRAINABLE_FORMATS and not m.error]
        self.list.clear()
        for ref in self.models:
            item = QListWidgetItem(describe_model(ref))
            item.setData(Qt.ItemDataRole.UserRole, ref.id)
            self.list.addItem(item)
        ids = [m.id for m in self.models]
        self.list.setCurrentRow(ids.index(keep) if keep in ids else 0 if ids else -1)

    def current(self) -> ModelRef | None:
        row = self.list.currentRow()
        return self.models[row] if 0 <= row < len(self.models) else None


class ReviewStep(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QLabel("")
        self.text.setObjectName("reviewText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.warning = QLabel("")
        self.warning.setObjectName("reviewWarning")
        self.warning.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.warning)
        layout.addStretch(1)

    def show_plan(self, config: TrainConfig, model: ModelRef, estimate: RunEstimate | None, device: str) -> None:
        rows = [("Base model", model.name), ("Dataset", Path(config.dataset).name),
                ("Method", f"{config.method}" + (f", rank {config.lora_r}, alpha {config.lora_alpha:g}, "
                                                 f"layers {config.target}" if config.method != "full" else "")),
                ("Learning rate", f"{config.learning_rate:g}, {config.lr_schedule}, warm-up "
                                  f"{config.warmup_ratio:.0%}"),
                ("Epochs", f"{config.epochs}" + (f" (at most {config.max_steps} steps)" if config.max_steps else "")),
                ("Maximum length", f"{config.max_length:,} tokens; longer records "
                                   f"{'left out' if config.length_policy == 'drop' else 'cut'}"),
                ("Loss on", "the assistant's replies" if config.train_on == "assistant" else "every token")]
        if estimate is not None:
            rows += [("Records", f"{estimate.examples:,} to train on, {estimate.validation:,} for validation"),
                     ("Steps", f"{estimate.steps:,} (batch {estimate.micro_batch} × {estimate.accumulation})"),
                     ("Tokens", f"{estimate.tokens:,} processed"),
                     ("Weights trained", f"{estimate.trainable:,}"),
                     ("Device", device),
                     ("Time (estimate)", f"about {format_duration(estimate.seconds)}"),
                     ("Memory (estimate)", f"about {format_bytes(estimate.memory_bytes)}")]
        self.text.setText("<table cellpadding='3'>" + "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")
        self.warning.setText("")
        if estimate is None:
            self.warning.setText("Counting the dataset's tokens with the model's tokenizer … (the estimates follow)")
            return
        available = psutil.virtual_memory().available
        if estimate.memory_bytes > available:
            self.warning.setText(
                f"<span style='color:#c62828'><b>This will probably not fit:</b> about "
                f"{format_bytes(estimate.memory_bytes)} is needed and {format_bytes(available)} of memory is free. "
                "Lower the maximum length or the micro-batch, turn on gradient checkpointing, or pick a smaller "
                "model.</span>")
        elif estimate.examples == 0:
            self.warning.setText("<span style='color:#c62828'>No record is left to train on: raise the maximum "
                                 "length or choose to cut long records.</span>")


class RunsView(QWidget):
    """Every run: state, curves and outputs; resume, cancel, export and chat from here too."""

    chat_requested = Signal(str)

    def __init__(self, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.background = background
        self.list = QListWidget()
        self.list.setObjectName("runList")
        self.details = QLabel("")
        self.details.setObjectName("runDetails")
        self.details.setWordWrap(True)
        self.train_view = TrainView()
        self.export_view = ExportView()
        self.export_view.chat_requested.connect(self.chat_requested)
        tabs = QTabWidget()
        tabs.addTab(self.train_view, "Training")
        tabs.addTab(self.export_view, "Outputs")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.details)
        right_layout.addWidget(tabs, 1)
        splitter = QSplitter()
        splitter.addWidget(self.list)
        splitter.addWidget(right)
        splitter.setSizes([300, 700])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.list.currentItemChanged.connect(self._selected)
        self.train_view.state_changed.connect(lambda _s: self.refresh())
        self.train_view.finished.connect(self.export_view.show_run)

    def refresh(self) -> None:
        self.background.run(runs.list_runs, self._fill, lambda _exc: None)

    def _fill(self, found: list[runs.RunSummary]) -> None:
        current = self.list.currentItem()
        keep = current.data(Qt.ItemDataRole.UserRole) if current else None
        self.list.blockSignals(True)
        self.list.clear()
        for r in found:
            loss = f" · loss {r.train_loss:.3f}" if r.train_loss is not None else ""
            item = QListWidgetItem(f"{r.id}\n{r.state} · step {r.last_step}/{r.total_steps or '?'}{loss}")
            item.setData(Qt.ItemDataRole.UserRole, r.path)
            self.list.addItem(item)
            if r.path == keep:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        elif not self.list.count():
            self.details.setText("No runs yet: start one under New run.")

    def select(self, run_dir: Path) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == str(run_dir):
                self.list.setCurrentRow(i)
                return

    def _selected(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is None:
            return
        run_dir = Path(item.data(Qt.ItemDataRole.UserRole))
        try:
            config = runs.read_config(run_dir)
            self.details.setText(f"<b>{html.escape(run_dir.name)}</b><br>Base {html.escape(config.base_model)} · "
                                 f"data {html.escape(Path(config.dataset).name)} · {config.method}, r {config.lora_r},"
                                 f" lr {config.learning_rate:g}, {config.epochs} epochs, max length "
                                 f"{config.max_length}<br>Folder: {html.escape(str(run_dir))}")
        except DesktopLLMError as exc:
            self.details.setText(html.escape(exc.message))
        if self.train_view.run_dir != run_dir:
            self.train_view.show_run(run_dir)
        self.export_view.show_run(run_dir)


class FinetunePage(QWidget):
    chat_requested = Signal(str)  # path of an exported model to chat with
    models_changed = Signal()  # an export joined the library
    status = Signal(str)

    def __init__(self, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("finetunePage")
        self.background = background
        self.run_dir: Path | None = None
        self.model_step = ModelStep(background)
        self.data_step = DataStep(background)
        self.method_step = MethodStep()
        self.review_step = ReviewStep()
        self.train_view = TrainView()
        self.export_view = ExportView()
        self.stack = QStackedWidget()
        for widget in (self.model_step, self.data_step, self.method_step, self.review_step, self.train_view,
                       self.export_view):
            self.stack.addWidget(widget)
        self.steps = QListWidget()
        self.steps.setObjectName("wizardSteps")
        self.steps.setFixedWidth(150)
        for name in STEPS:
            self.steps.addItem(name)
        self.back_button = QPushButton("Back")
        self.back_button.setObjectName("wizardBack")
        self.next_button = QPushButton("Next")
        self.next_button.setObjectName("wizardNext")
        self.next_button.setDefault(True)
        self.new_button = QPushButton("New run")
        self.new_button.setObjectName("wizardNewRun")
        self.new_button.setToolTip("Set up another run (the current one keeps training)")
        self.hint = QLabel("")
        self.hint.setObjectName("wizardHint")
        self.hint.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.hint, 1)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.next_button)
        wizard = QWidget()
        body = QHBoxLayout()
        body.addWidget(self.steps)
        body.addWidget(self.stack, 1)
        wizard_layout = QVBoxLayout(wizard)
        wizard_layout.addLayout(body, 1)
        wizard_layout.addLayout(buttons)

        self.runs_view = RunsView(background)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("finetuneTabs")
        self.tabs.addTab(wizard, "New run")
        self.tabs.addTab(self.runs_view, "Runs")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

        self.steps.currentRowChanged.connect(self._go)
        self.back_button.clicked.connect(lambda: self.go(self.stack.currentIndex() - 1))
        self.next_button.clicked.connect(self._next)
        self.new_button.clicked.connect(self.new_run)
        for step in (self.model_step, self.data_step, self.method_step):
            step.changed.connect(self._update)
        self.model_step.changed.connect(self._model_changed)
        self.data_step.preview_ready.connect(lambda _e: self._update())
        self.train_view.finished.connect(self._trained)
        self.train_view.state_changed.connect(lambda _s: self._update())
        for view in (self.export_view, self.runs_view.export_view):
            view.chat_requested.connect(self.chat_requested)
            view.exported.connect(lambda path: (self.models_changed.emit(),
                                                self.status.emit(f"Exported {path}; it is in My Models.")))
        self.runs_view.chat_requested.connect(self.chat_requested)
        self.tabs.currentChanged.connect(lambda i: i == 1 and self.runs_view.refresh())
        self._shown = False
        self.go(STEP_MODEL)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self.model_step.refresh()
            self.runs_view.refresh()

    # -- navigation ----------------------------------------------------------------------------------
    def go(self, step: int) -> None:
        if 0 <= step < len(STEPS) and self._reachable(step):
            self.steps.setCurrentRow(step)

    def _go(self, step: int) -> None:
        if not self._reachable(step):
            self.steps.blockSignals(True)
            self.steps.setCurrentRow(self.stack.currentIndex())
            self.steps.blockSignals(False)
            return
        self.stack.setCurrentIndex(step)
        if step == STEP_REVIEW:
            self._review()
        self._update()

    def _reachable(self, step: int) -> bool:
        if step >= STEP_TRAIN:
            return self.run_dir is not None and (step == STEP_TRAIN or runs.run_summary(self.run_dir).adapter
                                                 is not None)
        if self.run_dir is not None and runs.run_state(self.run_dir) == "running":
            return False  # the settings of a running run stay as they are (New run sets up another)
        needs = {STEP_DATA: self.model_step.current() is not None, STEP_METHOD: self.data_step.ready(),
                 STEP_REVIEW: self.data_step.ready()}
        return all(ok for s, ok in needs.items() if s <= step)

    def _next(self) -> None:
        step = self.stack.currentIndex()
        if step == STEP_REVIEW:
            self.start()
        else:
            self.go(step + 1)

    def _update(self) -> None:
        step = self.stack.currentIndex()
        self.back_button.setEnabled(step > 0 and self._reachable(step - 1))
        hint, can_next = "", self._reachable(step + 1) if step + 1 < len(STEPS) else False
        if step == STEP_MODEL and self.model_step.current() is None:
            hint = "No model to fine-tune yet: download one on the Models page."
        elif step == STEP_DATA and not self.data_step.ready():
            hint = "Choose a dataset file."
        elif step == STEP_REVIEW:
            problem = self.method_step.problem()
            ready = self.data_step.preview is not None
            can_next = problem is None and ready
            hint = problem or ("" if ready else "Waiting for the token counts …")
            self._review()
        elif step == STEP_TRAIN and self.run_dir is not None:
            can_next = runs.run_summary(self.run_dir).adapter is not None
        self.next_button.setText("Start training" if step == STEP_REVIEW else "Next")
        self.next_button.setEnabled(can_next)
        self.next_button.setVisible(step != STEP_EXPORT)
        self.new_button.setVisible(step >= STEP_TRAIN)
        self.hint.setText(hint)
        for i in range(len(STEPS)):
            item = self.steps.item(i)
            flags = item.flags()
            enabled = self._reachable(i)
            item.setFlags(flags | Qt.ItemFlag.ItemIsEnabled if enabled else flags & ~Qt.ItemFlag.ItemIsEnabled)

    def _model_changed(self) -> None:
        ref = self.model_step.current()
        if ref is not None:
            self.data_step.set_base_model(ref.id)
            self.method_step.set_model(ref.parameters)

    # -- the run -------------------------------------------------------------------------------------
    def config(self) -> TrainConfig:
        ref = self.model_step.current()
        assert ref is not None
        return TrainConfig(base_model=ref.id, **self.data_step.settings(), **self.method_step.settings())

    def estimate(self) -> tuple[RunEstimate, str] | None:
        preview = self.data_step.preview
        if preview is None:
            return None
        shape = ModelShape.from_config(preview["model_config"], preview["parameters"])
        config = self.config()
        device = preview["device"] if config.device == "auto" else config.device
        return estimate_run(config, preview["lengths"], shape, device=device, threads=preview["threads"],
                            weight_bytes=preview["weight_bytes"]), device

    def _review(self) -> None:
        ref = self.model_step.current()
        if ref is None or not self.data_step.ready():
            return
        try:
            config = self.config().validate()
        except DesktopLLMError as exc:
            self.review_step.text.setText(html.escape(exc.message))
            return
        found = self.estimate()
        self.review_step.show_plan(config, ref, found[0] if found else None, found[1] if found else "")

    def start(self) -> None:
        try:
            run_dir = runs.create_run(self.config())
        except DesktopLLMError as exc:
            self.hint.setText(f"<span style='color:#c62828'>{html.escape(exc.message)}</span> "
                              f"{html.escape(exc.hint or '')}")
            return
        self.run_dir = run_dir
        self.train_view.train(run_dir)
        self.export_view.show_run(None)
        self.go(STEP_TRAIN)
        self.runs_view.refresh()
        self.status.emit(f"Training started: {run_dir.name}. You can leave this page; it goes on.")

    def _trained(self, run_dir: Path) -> None:
        self.export_view.show_run(run_dir)
        self.runs_view.refresh()
        self._update()

    def new_run(self) -> None:
        """Back to the first step for another run; the one training goes on (see Runs)."""
        self.run_dir = None
        self.train_view.watcher.stop()
        self.go(STEP_MODEL)
        self._update()
