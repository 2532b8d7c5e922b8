"""Export a finished run (merged model, GGUF F16 / Q8_0) and chat with the result."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from desktop_llm.finetune import exports, runs
from desktop_llm.finetune.client import export_process
from desktop_llm.gui.finetune_jobs import ProcessJob

_HELP = {
    "merged": "The adapter folded into the base model: a safetensors folder for PyTorch and other tools.",
    "gguf-f16": "One GGUF file at 16 bits a weight: llama.cpp, LM Studio, Ollama, exact.",
    "gguf-q8_0": "One GGUF file at about 8.5 bits a weight: half the size, nearly the same answers. "
                 "Chats fastest here.",
}


class ExportView(QWidget):
    chat_requested = Signal(str)  # path of the model to chat with
    exported = Signal(str)  # path of a new export (it is in the library)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_dir: Path | None = None
        self.job: ProcessJob | None = None
        self._chat_after = False
        self.heading = QLabel("Export")
        self.heading.setStyleSheet("font-weight: 600; font-size: 14px;")
        self.adapter = QLabel("")
        self.adapter.setObjectName("adapterPath")
        self.adapter.setWordWrap(True)
        self.adapter.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.boxes: dict[str, QCheckBox] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.adapter)
        for fmt in exports.FORMATS:
            box = QCheckBox(exports.FORMAT_TITLES[fmt])
            box.setObjectName(f"export_{fmt}")
            box.setToolTip(_HELP[fmt])
            note = QLabel(_HELP[fmt])
            note.setStyleSheet("color: palette(placeholder-text); margin-left: 22px;")
            note.setWordWrap(True)
            layout.addWidget(box)
            layout.addWidget(note)
            self.boxes[fmt] = box
        self.boxes["gguf-q8_0"].setChecked(True)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("exportButton")
        self.chat_button = QPushButton("Chat with it")
        self.chat_button.setObjectName("chatWithIt")
        self.chat_button.setDefault(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("exportProgress")
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setObjectName("exportStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.chat_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.export_button.clicked.connect(lambda: self.export([f for f, b in self.boxes.items() if b.isChecked()]))
        self.chat_button.clicked.connect(self.chat)
        self.show_run(None)

    def show_run(self, run_dir: Path | None) -> None:
        self.run_dir = Path(run_dir) if run_dir else None
        summary = runs.run_summary(self.run_dir) if self.run_dir else None
        ready = summary is not None and summary.adapter is not None
        self.adapter.setText(f"LoRA adapter (peft format): {summary.adapter}" if ready and summary else
                             "Exports are made from a finished run.")
        busy = self.job is not None and self.job.running
        self.export_button.setEnabled(ready and not busy)
        self.chat_button.setEnabled(ready and not busy)
        if ready and not busy:
            self._list_exports()

    def _list_exports(self) -> None:
        assert self.run_dir is not None
        have = exports.existing_exports(self.run_dir)
        for fmt, box in self.boxes.items():
            box.setText(exports.FORMAT_TITLES[fmt] + ("  ✓ made" if fmt in have else ""))
        self.status.setText("<br>".join(f"{html.escape(exports.FORMAT_TITLES[f])}: {html.escape(str(p))}"
                                        for f, p in have.items()))

    def export(self, formats: list[str], chat_after: bool = False) -> None:
        if self.run_dir is None or not formats or (self.job is not None and self.job.running):
            return
        self._chat_after = chat_after
        self.job = ProcessJob(export_process(self.run_dir, formats), self)
        self.job.event.connect(self._on_event)
        self.export_button.setEnabled(False)
        self.chat_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.status.setText("Exporting …")
        self.job.start()

    def chat(self) -> None:
        if self.run_dir is None:
            return
        path = exports.chat_export(self.run_dir)
        if path is None:
            self.export(["gguf-q8_0"], chat_after=True)  # the quickest to make and to chat with
        else:
            self.chat_requested.emit(str(path))

    def _on_event(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "stage":
            self.progress.setValue(int(100 * float(e.get("fraction") or 0)))
            self.progress.setFormat(f"{exports.FORMAT_TITLES.get(str(e.get('format')), e.get('format'))}: %p %")
        elif kind == "exported":
            self.exported.emit(str(e["path"]))
        elif kind == "done":
            self.progress.setVisible(False)
            self.show_run(self.run_dir)
            if self._chat_after:
                self._chat_after = False
                self.chat()
        elif kind == "error":
            self.progress.setVisible(False)
            self.show_run(self.run_dir)
            hint = f" {e['hint']}" if e.get("hint") else ""
            self.status.setText(f"<span style='color:#c62828'>{html.escape(str(e.get('message')))}</span>"
                                f"{html.escape(hint)}")
