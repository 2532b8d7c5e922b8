"""The wizard's Data step: import a dataset, see its shape and problems, preview records as the model reads them.

The file is read and checked here (``core.datasets``, instant); token counts and the rendering with the
base model's chat template come from the preview process (``finetune.preview``), which loads the
tokenizer, so this page never imports transformers.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.datasets import DEFAULT_FIELDS, SHAPE_TITLES, SHAPES, FieldMapping, LoadedDataset, load_dataset
from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.paths import app_home
from desktop_llm.finetune.client import preview_process
from desktop_llm.finetune.config import TrainConfig
from desktop_llm.gui.background import Background
from desktop_llm.gui.finetune_jobs import ProcessJob
from desktop_llm.gui.spin_boxes import float_spin, int_spin
from desktop_llm.gui.theme import is_dark

_FIELD_TITLES = {"messages": "Turns", "role": "Role key", "content": "Text key", "conversations": "Turns",
                 "from": "Speaker key", "value": "Text key", "instruction": "Instruction", "input": "Input",
                 "output": "Output", "prompt": "Prompt", "completion": "Completion", "text": "Text"}


def mapping_dict(mapping: FieldMapping) -> dict[str, Any]:
    return {"shape": mapping.shape, "fields": dict(mapping.fields), "roles": dict(mapping.roles),
            "system_prompt": mapping.system_prompt}


def tokens_html(record: dict[str, Any], dark: bool) -> str:
    """The rendered record with each token shaded (two alternating greys) and trained tokens in green."""
    text = record["text"]
    trained_bg = "#1b5e20" if dark else "#c8e6c9"
    shades = ("#37474f", "#263238") if dark else ("#eceff1", "#dde3e6")
    parts = []
    for i, (start, end, trained) in enumerate(record["tokens"]):
        piece = html.escape(text[start:end]).replace("\n", "↵<br>")
        colour = trained_bg if trained else shades[i % 2]
        weight = "font-weight:600;" if trained else ""
        parts.append(f'<span style="background-color:{colour};{weight}">{piece}</span>')
    return f'<div style="font-family:monospace; white-space:pre-wrap;">{"".join(parts)}</div>'


class DataStep(QWidget):
    changed = Signal()  # the dataset, its mapping or the length settings changed
    preview_ready = Signal(dict)  # the preview event (lengths, records, model facts)

    def __init__(self, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.background = background
        self.base_model = ""
        self.data: LoadedDataset | None = None
        self.preview: dict[str, Any] | None = None
        self.token_problems: list[dict[str, Any]] = []
        self.job: ProcessJob | None = None
        self._record_index = 0

        self.path = QLineEdit()
        self.path.setObjectName("datasetPath")
        self.path.setPlaceholderText("A JSONL, JSON or CSV file: chat messages, ShareGPT, Alpaca, "
                                     "prompt/completion or plain text")
        browse = QPushButton("Choose file…")
        browse.setObjectName("chooseDataset")
        browse.clicked.connect(self._choose)
        self.path.editingFinished.connect(lambda: self.load(self.path.text().strip()))
        top = QHBoxLayout()
        top.addWidget(self.path, 1)
        top.addWidget(browse)

        self.summary = QLabel("No dataset yet.")
        self.summary.setObjectName("datasetSummary")
        self.summary.setWordWrap(True)
        self.shape = QComboBox()
        self.shape.setObjectName("datasetShape")
        for shape in SHAPES:
            self.shape.addItem(SHAPE_TITLES[shape], shape)
        self.shape.activated.connect(lambda _i: self._show_fields({}))
        self.fields_form = QFormLayout()
        self.field_edits: dict[str, QLineEdit] = {}
        apply = QPushButton("Apply mapping")
        apply.setObjectName("applyMapping")
        apply.setToolTip("Read the file again with this shape and these field names")
        apply.clicked.connect(lambda: self.load(self.path.text().strip(), self.current_mapping()))
        mapping_box = QGroupBox("Detected mapping (change it if it is wrong)")
        mapping_layout = QVBoxLayout(mapping_box)
        self.mapping_text = QLabel("")
        self.mapping_text.setObjectName("mappingText")
        self.mapping_text.setWordWrap(True)
        mapping_layout.addWidget(self.mapping_text)
        shape_row = QFormLayout()
        shape_row.addRow("Shape", self.shape)
        mapping_layout.addLayout(shape_row)
        mapping_layout.addLayout(self.fields_form)
        mapping_layout.addWidget(apply)

        self.max_length = int_spin("maxLength", 16, 131072, "Records longer than this many tokens are dropped "
                                   "or cut", step=128, suffix=" tokens")
        self.max_length.setValue(1024)
        self.policy = QComboBox()
        self.policy.setObjectName("lengthPolicy")
        self.policy.addItem("Leave them out", "drop")
        self.policy.addItem("Cut them to the maximum", "truncate")
        self.validation = float_spin("validationShare", 0, 50, 5, "Records kept aside to measure the loss on "
                                     "data the model does not train on")
        self.validation.setSuffix(" %")
        self.validation.setDecimals(0)
        self.validation.setValue(10)
        self.length_note = QLabel("")
        self.length_note.setObjectName("lengthNote")
        self.length_note.setWordWrap(True)
        limits = QGroupBox("Length and split")
        form = QFormLayout(limits)
        form.addRow("Maximum length", self.max_length)
        form.addRow("Longer records", self.policy)
        form.addRow("Validation share", self.validation)
        form.addRow(self.length_note)
        for widget in (self.max_length, self.validation):
            widget.valueChanged.connect(self._limits_changed)
        self.policy.currentIndexChanged.connect(self._limits_changed)

        self.problems = QListWidget()
        self.problems.setObjectName("datasetProblems")
        self.problems.setWordWrap(True)
        problems_box = QGroupBox("Problems (by line)")
        QVBoxLayout(problems_box).addWidget(self.problems)

        self.preview_status = QLabel("")
        self.preview_status.setObjectName("previewStatus")
        self.preview_status.setWordWrap(True)
        self.record_view = QTextBrowser()
        self.record_view.setObjectName("recordPreview")
        self.record_caption = QLabel("")
        self.record_caption.setObjectName("recordCaption")
        prev_button, next_button = QPushButton("◀ Previous"), QPushButton("Next ▶")
        prev_button.setObjectName("previousRecord")
        next_button.setObjectName("nextRecord")
        prev_button.clicked.connect(lambda: self._show_record(self._record_index - 1))
        next_button.clicked.connect(lambda: self._show_record(self._record_index + 1))
        legend = QLabel("Each shaded piece is one token. <b style='background-color:#c8e6c9; color:#1b1b1b'>"
                        "Green</b> tokens are the ones the model learns to write (the assistant's replies); "
                        "the rest is context it reads. ↵ is a line break.")
        legend.setWordWrap(True)
        nav = QHBoxLayout()
        nav.addWidget(prev_button)
        nav.addWidget(self.record_caption, 1)
        nav.addWidget(next_button)
        preview_box = QGroupBox("Preview, rendered with the base model's chat template")
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addWidget(self.preview_status)
        preview_layout.addWidget(legend)
        preview_layout.addLayout(nav)
        preview_layout.addWidget(self.record_view, 1)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.summary)
        left_layout.addWidget(mapping_box)
        left_layout.addWidget(limits)
        left_layout.addWidget(problems_box, 1)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(preview_box)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 560])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self._show_fields({})

    # -- what the wizard reads -----------------------------------------------------------------------
    def ready(self) -> bool:
        return self.data is not None and bool(self.data.records)

    def settings(self) -> dict[str, Any]:
        """The TrainConfig fields this step decides."""
        return {"dataset": self.path.text().strip(),
                "mapping": mapping_dict(self.data.mapping) if self.data is not None else None,
                "max_length": self.max_length.value(), "length_policy": self.policy.currentData(),
                "validation_fraction": round(self.validation.value() / 100, 3)}

    def set_base_model(self, model_id: str) -> None:
        if model_id != self.base_model:
            self.base_model = model_id
            if self.data is not None:
                self._start_preview()

    # -- loading ---------------------------------------------------------------------------------------
    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a dataset", str(Path.home()),
                                              "Datasets (*.jsonl *.json *.csv *.tsv);;All files (*)")
        if path:
            self.load(path)

    def load(self, path: str, mapping: FieldMapping | None = None) -> None:
        if not path:
            return
        self.path.setText(path)
        self.summary.setText("Reading the file …")
        self.background.run(lambda: load_dataset(Path(path).expanduser(), mapping), self._on_loaded, self._on_failed)

    def _on_failed(self, exc: Exception) -> None:
        self.data, self.preview = None, None
        message = exc.message + (f" {exc.hint}" if exc.hint else "") if isinstance(exc, DesktopLLMError) else str(exc)
        self.summary.setText(f"<span style='color:#c62828'>{html.escape(message)}</span>")
        self.problems.clear()
        self.record_view.clear()
        self.changed.emit()

    def _on_loaded(self, data: LoadedDataset) -> None:
        self.data = data
        self.preview = None
        notes = "".join(f"<br>{html.escape(n)}" for n in data.notes)
        self.summary.setText(f"<b>{html.escape(data.path.name)}</b> ({data.file_format.upper()}): "
                             f"{html.escape(data.summary())}{notes}")
        self.mapping_text.setText(data.mapping.describe())
        self.shape.setCurrentIndex(SHAPES.index(data.mapping.shape))
        self._show_fields(data.mapping.fields)
        self.token_problems = []
        self._list_problems()
        self._start_preview()
        self.changed.emit()

    def _show_fields(self, fields: dict[str, str]) -> None:
        while self.fields_form.rowCount():
            self.fields_form.removeRow(0)
        self.field_edits = {}
        shape = self.shape.currentData()
        for name, default in DEFAULT_FIELDS[shape].items():
            edit = QLineEdit(fields.get(name, default))
            edit.setObjectName(f"field_{name}")
            self.fields_form.addRow(_FIELD_TITLES.get(name, name), edit)
            self.field_edits[name] = edit

    def current_mapping(self) -> FieldMapping:
        shape = self.shape.currentData()
        old = self.data.mapping if self.data is not None and self.data.mapping.shape == shape else None
        return FieldMapping(shape, {k: e.text().strip() for k, e in self.field_edits.items() if e.text().strip()},
                            dict(old.roles) if old else {}, old.system_prompt if old else None)

    def _list_problems(self) -> None:
        self.problems.clear()
        if self.data is None:
            return
        found = [(p.line, p.message, p.dropped) for p in self.data.problems]
        found += [(p["line"], p["message"], p["dropped"]) for p in self.token_problems]
        found += self._length_problems()
        for _line, message, dropped in sorted(found, key=lambda p: p[0]):
            self.problems.addItem(f"{message} [{'left out' if dropped else 'kept'}]")
        if not found:
            self.problems.addItem("No problems found.")

    def _length_problems(self) -> list[tuple[int, str, bool]]:
        if self.preview is None:
            return []
        limit, drop = self.max_length.value(), self.policy.currentData() == "drop"
        what = "left out" if drop else f"cut to {limit:,} tokens"
        return [(line, f"Line {line}: {n:,} tokens, over the maximum of {limit:,}; {what}.", drop)
                for line, n in zip(self.preview["lines"], self.preview["lengths"], strict=True) if n > limit]

    # -- preview ---------------------------------------------------------------------------------------
    def _start_preview(self) -> None:
        if self.data is None or not self.base_model:
            return
        if self.job is not None and self.job.running:
            self.job.stop()
        folder = app_home() / "finetune" / "preview"
        folder.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(base_model=self.base_model, dataset=str(self.data.path),
                             mapping=mapping_dict(self.data.mapping))
        (folder / "config.json").write_text(config.to_json(), encoding="utf-8")
        self.preview_status.setText("Loading the model's tokenizer to count tokens …")
        self.job = ProcessJob(preview_process(folder), self)
        self.job.event.connect(self._on_preview_event)
        self.job.start()

    def _on_preview_event(self, e: dict[str, Any]) -> None:
        if self.sender() is not self.job:
            return  # a preview of an earlier file or model
        kind = e.get("event")
        if kind == "stage":
            detail = f" ({e['detail']})" if e.get("detail") else ""
            self.preview_status.setText(f"Preparing the preview: {e.get('stage')}{detail} "
                                        f"{int(100 * float(e.get('fraction') or 0))} % …")
        elif kind == "problems":
            self.token_problems = list(e.get("problems") or [])
        elif kind == "preview":
            self.preview = e
            self._limits_changed()
            self._show_record(0)
            self.preview_ready.emit(e)
        elif kind == "error":
            self.preview_status.setText(f"<span style='color:#c62828'>{html.escape(str(e.get('message')))}</span> "
                                        f"{html.escape(str(e.get('hint') or ''))}")

    def _limits_changed(self) -> None:
        if self.preview is not None:
            lengths = self.preview["lengths"]
            limit = self.max_length.value()
            over = sum(1 for n in lengths if n > limit)
            trained = sum(self.preview["trained"])
            self.preview_status.setText(
                f"{len(lengths):,} records, {sum(lengths):,} tokens ({trained:,} trained); longest "
                f"{max(lengths, default=0):,}, median {sorted(lengths)[len(lengths) // 2] if lengths else 0:,}.")
            self.length_note.setText(f"{over:,} record{'s' if over != 1 else ''} over {limit:,} tokens"
                                     + (": " + ("left out." if self.policy.currentData() == "drop" else "cut.")
                                        if over else "."))
            self._list_problems()
        self.changed.emit()

    def _show_record(self, index: int) -> None:
        records = (self.preview or {}).get("records") or []
        if not records:
            return
        self._record_index = max(0, min(len(records) - 1, index))
        record = records[self._record_index]
        self.record_caption.setText(f"Record {self._record_index + 1} of the first {len(records)} · line "
                                    f"{record['line']} · {len(record['tokens']):,} tokens, "
                                    f"{record['trained_tokens']:,} trained")
        self.record_view.setHtml(tokens_html(record, is_dark()))

