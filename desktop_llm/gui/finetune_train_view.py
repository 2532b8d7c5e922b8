"""A run's training, live or from its history: stage, loss chart, figures, sample replies, cancel and resume."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.units import format_duration
from desktop_llm.finetune import runs
from desktop_llm.finetune.client import FinetuneProcess
from desktop_llm.gui.finetune_jobs import RunWatcher
from desktop_llm.gui.loss_chart import LossChart

_STAGES = {"loading": "Loading the dataset and the model", "tokenizing": "Tokenizing the records",
           "training": "Training", "saving": "Saving the adapter"}
# Processes this app started, by run folder: whichever view shows the run can cancel it politely.
PROCESSES: dict[str, FinetuneProcess] = {}


def start_training(run_dir: Path) -> FinetuneProcess:
    """Start (or resume) the run's training process and remember it."""
    proc = FinetuneProcess(run_dir).start()
    PROCESSES[str(run_dir)] = proc
    return proc


def _fmt_loss(value: Any) -> str:
    return "–" if value is None else f"{float(value):.4f}"


class TrainView(QWidget):
    finished = Signal(object)  # the run folder, once its training is done
    state_changed = Signal(str)  # running, finished, cancelled, failed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.watcher = RunWatcher(self)
        self.watcher.event.connect(self.on_event)
        self.title = QLabel("No run yet")
        self.title.setObjectName("trainTitle")
        self.title.setStyleSheet("font-weight: 600; font-size: 14px;")
        self.stage = QLabel("")
        self.stage.setObjectName("trainStage")
        self.stage.setWordWrap(True)
        # Its two lines of text must not be squeezed by the chart, which takes all the height it can.
        self.stage.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setRange(0, 100)
        self.chart = LossChart()
        self.figures: dict[str, QLabel] = {}
        grid = QGridLayout()
        names = (("step", "Step"), ("loss", "Train loss"), ("val_loss", "Validation loss"), ("lr", "Learning rate"),
                 ("speed", "Tokens/s"), ("eta", "Time left"))
        for i, (key, title) in enumerate(names):
            caption = QLabel(title)
            caption.setStyleSheet("color: palette(placeholder-text);")
            value = QLabel("–")
            value.setObjectName(f"figure_{key}")
            value.setStyleSheet("font-size: 15px; font-weight: 600;")
            grid.addWidget(caption, 0, i)
            grid.addWidget(value, 1, i)
            self.figures[key] = value
        self.plan = QLabel("")
        self.plan.setObjectName("trainPlan")
        self.plan.setWordWrap(True)
        self.samples = QTextBrowser()
        self.samples.setObjectName("trainSamples")
        self.samples.setPlaceholderText("Replies to a few fixed prompts appear here as the model learns.")
        self.samples.setMaximumHeight(170)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelTraining")
        self.cancel_button.setToolTip("Stop after the current step and keep a checkpoint to resume from")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeTraining")
        self.resume_button.setToolTip("Continue from the last checkpoint")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.resume_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.stage)
        layout.addLayout(buttons)
        layout.addLayout(grid)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.plan)
        samples_title = QLabel("Sample replies (greedy)")
        samples_title.setStyleSheet("font-weight: 600;")
        layout.addWidget(samples_title)
        layout.addWidget(self.samples)
        self._set_buttons("idle")

    # -- which run -------------------------------------------------------------------------------------
    def show_run(self, run_dir: Path) -> None:
        """Show a run's history and follow it if it is training."""
        self.run_dir = Path(run_dir)
        self.title.setText(f"Run {self.run_dir.name}")
        self.chart.clear()
        self.samples.clear()
        self.plan.setText("")
        self.stage.setText("")
        self.progress.setValue(0)
        for label in self.figures.values():
            label.setText("–")
        state = runs.run_state(self.run_dir)
        self._set_buttons(state)
        self.watcher.watch(self.run_dir, PROCESSES.get(str(self.run_dir)))

    def train(self, run_dir: Path) -> None:
        """Start (or resume) the run's training and show it."""
        start_training(Path(run_dir))
        self.show_run(run_dir)
        self._set_buttons("running")

    def resume(self) -> None:
        if self.run_dir is not None:
            self.train(self.run_dir)

    def cancel(self) -> None:
        if self.run_dir is None:
            return
        proc = PROCESSES.get(str(self.run_dir))
        if proc is not None and proc.running:
            proc.cancel()
        else:
            runs.cancel_run(self.run_dir)  # a run still training from an earlier session of the app
        self.cancel_button.setEnabled(False)
        self.stage.setText("Stopping after the current step and saving a checkpoint …")

    def _set_buttons(self, state: str) -> None:
        self.cancel_button.setVisible(state == "running")
        self.cancel_button.setEnabled(True)
        resumable = state in ("cancelled", "failed") and self.run_dir is not None and \
            runs.latest_checkpoint(self.run_dir) is not None
        self.resume_button.setVisible(resumable or (state == "failed" and self.run_dir is not None))
        self.resume_button.setText("Resume" if resumable else "Start again")

    # -- events ----------------------------------------------------------------------------------------
    def on_event(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "stage":
            stage = str(e.get("stage"))
            detail = f" ({e['detail']})" if e.get("detail") else ""
            self.stage.setText(f"{_STAGES.get(stage, stage)}{detail} …")
            if stage != "training":
                self.progress.setValue(int(100 * float(e.get("fraction") or 0)))
            self._set_buttons("running")
            self.state_changed.emit("running")
        elif kind == "plan":
            self.chart.total_steps = e.get("steps")
            self.plan.setText(
                f"{e['examples']:,} training records, {e['validation']:,} for validation · {e['steps']} steps "
                f"({e['epochs']} epoch{'s' if e['epochs'] != 1 else ''}, batch {e['micro_batch']} × "
                f"{e['grad_accum']}) · {e['trainable_parameters']:,} of {e['parameters']:,} weights trained "
                f"({e['method']}, {e['device']}, {e['dtype']}) · estimate {format_duration(e.get('estimate_seconds'))}")
        elif kind == "resumed":
            self.samples.append(f"<i>Resumed from the checkpoint at step {e.get('step')}.</i>")
        elif kind == "step":
            step, total = int(e.get("step", 0)), int(e.get("total_steps") or 1)
            if e.get("loss") is not None:
                self.chart.add_train(step, float(e["loss"]))
            self.progress.setValue(int(100 * step / max(1, total)))
            self.progress.setFormat(f"step {step} of {total}")
            self.figures["step"].setText(f"{step} / {total}")
            self.figures["loss"].setText(_fmt_loss(e.get("loss")))
            self.figures["lr"].setText(f"{float(e.get('lr') or 0):.2e}")
            speed = e.get("tokens_per_second")
            self.figures["speed"].setText("–" if speed is None else f"{float(speed):,.0f}")
            self.figures["eta"].setText(format_duration(e.get("eta_seconds")) or "–")
            self.stage.setText("Training …")
        elif kind == "eval":
            if e.get("val_loss") is not None:
                self.chart.add_validation(int(e.get("step", 0)), float(e["val_loss"]))
            self.figures["val_loss"].setText(_fmt_loss(e.get("val_loss")))
        elif kind == "sample":
            self.samples.append(f"<b>step {e.get('step')}</b> · {html.escape(str(e.get('prompt')))}<br>"
                                f"→ {html.escape(str(e.get('reply')))}")
        elif kind == "checkpoint":
            self.stage.setText(f"Checkpoint saved at step {e.get('step')}.")
        elif kind == "done":
            self.progress.setValue(100)
            self.stage.setText(f"Finished: {e.get('steps')} steps in {format_duration(e.get('seconds'))}. "
                               f"Mean train loss of the last steps {_fmt_loss(e.get('train_loss'))}, validation loss "
                               f"{_fmt_loss(e.get('val_loss'))}. The adapter is in {e.get('adapter')}.")
            self._set_buttons("finished")
            self.state_changed.emit("finished")
            self.finished.emit(self.run_dir)
        elif kind == "cancelled":
            self.stage.setText(f"Stopped at step {e.get('step')}; the checkpoint is kept, so the run can resume."
                               if e.get("checkpoint") else "Stopped before the first checkpoint.")
            self._set_buttons("cancelled")
            self.state_changed.emit("cancelled")
        elif kind == "error":
            hint = f" {e['hint']}" if e.get("hint") else ""
            self.stage.setText(f"<span style='color:#c62828'>{html.escape(str(e.get('message')))}</span>"
                               f"{html.escape(hint)}")
            self._set_buttons("failed")
            self.state_changed.emit("failed")
