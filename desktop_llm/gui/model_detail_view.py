"""One Hub model: its card, its files, and for GGUF repos a quantization picker that says, for each
choice, whether it fits this machine (weights plus the KV cache at the chosen context)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import GatedRepo
from desktop_llm.core.fit_estimate import FitEstimate, ModelShape, estimate_fit, recommend
from desktop_llm.core.quantization import QuantChoice, group_quants
from desktop_llm.core.repo_files import transformers_files
from desktop_llm.core.settings import CONTEXT_RANGE
from desktop_llm.core.units import format_bytes, format_count, format_date
from desktop_llm.gui.hub_services import HubServices

if TYPE_CHECKING:
    from desktop_llm.hub.client import ModelDetail

_VERDICT_COLOURS = {"gpu": "#2e7d32", "partial": "#8d6e00", "cpu": "", "no": "#c62828"}


def verdict_text(est: FitEstimate) -> str:
    """The table's short form; the full sentence (``est.summary``) is shown for the selected row."""
    need = format_bytes(est.need_bytes)
    if est.verdict == "gpu":
        return f"✓ On the GPU · {need}"
    if est.verdict == "partial":
        return f"Partly on the GPU ({est.gpu_layers}/{est.total_layers} layers) · {need}"
    if est.verdict == "cpu":
        return f"✓ CPU only · {need}"
    return f"✗ Will not fit · {need}"


class ModelDetailView(QWidget):
    """Shows a repo picked in the search results; ``download_requested`` carries (repo id, commit, files)."""

    download_requested = Signal(str, str, object)  # repo_id, commit, list[RepoFile]
    error = Signal(object)  # an exception from the Hub, for the page's error banner

    def __init__(self, services: HubServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelDetail")
        self.services = services
        self.detail: ModelDetail | None = None
        self.choices: list[QuantChoice] = []
        self.estimates: list[FitEstimate] = []
        self.shape: ModelShape | None = None
        self.recommended: int | None = None
        self._shape_known = False

        self.title = QLabel("Pick a model from the results")
        self.title.setObjectName("detailTitle")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setOpenExternalLinks(True)
        self.meta = QLabel("")
        self.meta.setObjectName("detailMeta")
        self.meta.setWordWrap(True)
        self.card = QLabel("")
        self.card.setObjectName("detailCard")
        self.card.setWordWrap(True)
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.gate_note = QLabel("")
        self.gate_note.setObjectName("gateNote")
        self.gate_note.setWordWrap(True)
        self.gate_note.setTextFormat(Qt.TextFormat.RichText)
        self.gate_note.setOpenExternalLinks(True)
        self.gate_note.hide()

        self.context = QSpinBox()
        self.context.setObjectName("fitContext")
        self.context.setRange(*CONTEXT_RANGE)
        self.context.setSingleStep(1024)
        self.context.setValue(services.settings.context_size)
        self.context.setSuffix(" tokens")
        self.context.setToolTip("The context you plan to load the model with: its KV cache grows with it.")
        self.memory_label = QLabel("")
        self.memory_label.setObjectName("machineMemory")
        fit_row = QHBoxLayout()
        fit_row.addWidget(QLabel("Fit for a context of"))
        fit_row.addWidget(self.context)
        fit_row.addWidget(self.memory_label, 1)

        self.table = QTreeWidget()
        self.table.setObjectName("quantTable")
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["Quantization", "Size", "Bits/weight", "On this machine", "About"])
        self.fit_summary = QLabel("")
        self.fit_summary.setObjectName("fitSummary")
        self.fit_summary.setWordWrap(True)
        header = self.table.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.download_button.setEnabled(False)
        self.explain = QLabel("")
        self.explain.setObjectName("quantExplain")
        self.explain.setWordWrap(True)
        self.explain.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.meta)
        layout.addWidget(self.gate_note)
        layout.addWidget(self.card)
        layout.addLayout(fit_row)
        self.files = QTreeWidget()
        self.files.setObjectName("repoFiles")
        self.files.setRootIsDecorated(False)
        self.files.setHeaderLabels(["File", "Size", "SHA-256"])
        self.files.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("detailTabs")
        self.tabs.addTab(self.table, "Quantizations")
        self.tabs.addTab(self.files, "Files")
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.fit_summary)
        layout.addWidget(self.explain)
        layout.addWidget(self.download_button, 0, Qt.AlignmentFlag.AlignRight)

        self.table.currentItemChanged.connect(lambda *_: self._update_button())
        self.table.itemDoubleClicked.connect(lambda *_: self._download())
        self.download_button.clicked.connect(self._download)
        self.context.valueChanged.connect(lambda _v: self._refresh_estimates())
        services.memory_changed.connect(lambda _m: self._refresh_estimates())
        self._show_memory()

    # -- loading ------------------------------------------------------------------------------
    def show_repo(self, repo_id: str) -> None:
        self.detail = None
        self.choices, self.estimates, self.shape, self._shape_known = [], [], None, False
        self.title.setText(f"<h3 style='margin:0'>{html.escape(repo_id)}</h3>")
        self.meta.setText("Loading…")
        self.card.setText("")
        self.gate_note.hide()
        self.table.clear()
        self.files.clear()
        self.tabs.setTabText(1, "Files")
        self._update_button()
        self.services.call(lambda c: c.model_detail(repo_id), self._on_detail,
                           lambda exc: self._on_error(repo_id, exc))

    def _on_error(self, repo_id: str, exc: Exception) -> None:
        if self.detail is None and repo_id in self.title.text():
            self.meta.setText("")
        self.error.emit(exc)

    def _on_detail(self, detail: ModelDetail) -> None:
        if html.escape(detail.repo_id) not in self.title.text():
            return  # the user moved on to another model
        self.detail = detail
        self.title.setText(f"<h3 style='margin:0'><a href='{html.escape(detail.page_url)}'>"
                           f"{html.escape(detail.repo_id)}</a></h3>")
        parts = [f"by {detail.author}" if detail.author else "",
                 f"{format_count(detail.downloads)} downloads", f"{format_count(detail.likes)} likes",
                 f"license {detail.license}" if detail.license else "no license given",
                 f"updated {format_date(detail.last_modified)}" if detail.last_modified else ""]
        self.meta.setText(" · ".join(p for p in parts if p))
        self.card.setText(detail.card_excerpt or "This model has no description.")
        if detail.gated:
            self.gate_note.setText(
                f"<b>Gated model:</b> accept its terms on <a href='{html.escape(detail.page_url)}'>its Hub page</a>, "
                "then add your Hub token in Settings to download it.")
            self.gate_note.show()
        for f in detail.files:
            item = QTreeWidgetItem([f.path, format_bytes(f.size) if f.size is not None else "",
                                    f.sha256[:16] + "…" if f.sha256 else "(small file, kept in git)"])
            item.setToolTip(2, f.sha256 or "")
            self.files.addTopLevelItem(item)
        self.tabs.setTabText(1, f"Files ({len(detail.files)})")
        self.choices = group_quants(detail.gguf_files)
        if not self.choices and detail.has_safetensors:
            files = transformers_files(detail.files)
            weights = sum(f.size or 0 for f in files)
            self.choices = [QuantChoice(name="Full model (safetensors)", files=tuple(files), size=weights,
                                        bits_per_weight=None, description="transformers weights, for the PyTorch "
                                        "backend and fine-tuning", complete=True)]
        self._refresh_estimates()
        self._fetch_shape(detail)

    def _fetch_shape(self, detail: ModelDetail) -> None:
        """All quantizations of a model share its shape: read it once, from one GGUF header or config.json."""
        if not self.choices:
            return

        def done(shape: ModelShape | None) -> None:
            if self.detail is detail:
                self.shape, self._shape_known = shape, True
                self._refresh_estimates()

        self.services.call(lambda client: client.model_shape(detail), done, lambda _exc: done(None))

    # -- fit ----------------------------------------------------------------------------------
    def _show_memory(self) -> None:
        m = self.services.memory
        gpu = (f"{m.gpu_name or 'GPU'} with {format_bytes(m.vram_free or 0)} free" if m.vram_total
               else "no GPU offload")
        self.memory_label.setText(f"This machine: {format_bytes(m.ram_available)} RAM available, {gpu}")

    def _refresh_estimates(self) -> None:
        self._show_memory()
        memory = self.services.memory
        self.estimates = [estimate_fit(c.size, self.shape, self.context.value(), memory) for c in self.choices]
        self.recommended = recommend(self.choices, self.estimates)
        current = self.table.currentItem()
        selected = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else self.recommended
        self.table.clear()
        for i, (choice, est) in enumerate(zip(self.choices, self.estimates, strict=True)):
            about = choice.description
            if not choice.complete:
                about = f"incomplete: part {', '.join(map(str, choice.missing))} missing on the Hub"
            if i == self.recommended:
                about = f"★ Recommended · {about}"
            files = f" ({len(choice.files)} files)" if choice.split else ""
            bits = f"{choice.bits_per_weight:.1f}" if choice.bits_per_weight else ""
            verdict = verdict_text(est) if self._shape_known or self.shape else "checking the model…"
            item = QTreeWidgetItem([choice.name + files, format_bytes(choice.size), bits, verdict, about])
            item.setData(0, Qt.ItemDataRole.UserRole, i)
            item.setToolTip(3, est.summary)
            colour = _VERDICT_COLOURS.get(est.verdict)
            if colour:
                item.setForeground(3, QBrush(QColor(colour)))
            if i == self.recommended:
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
            self.table.addTopLevelItem(item)
            if i == selected:
                self.table.setCurrentItem(item)
        if not self.choices and self.detail is not None:
            self.explain.setText("This repository has no GGUF or safetensors model files to download.")
        elif self.choices and self.choices[0].bits_per_weight is not None:
            self.explain.setText(
                "Quantization stores each weight in fewer bits: smaller files and less memory, at some cost in "
                "quality. Around 4–6 bits per weight (Q4_K_M, Q5_K_M, Q6_K) is the usual balance; the KV cache "
                "for the context comes on top of the file size.")
        else:
            self.explain.setText("")
        self._update_button()

    # -- download -----------------------------------------------------------------------------
    def selected_choice(self) -> QuantChoice | None:
        item = self.table.currentItem()
        if item is None:
            return None
        return self.choices[item.data(0, Qt.ItemDataRole.UserRole)]

    def _update_button(self) -> None:
        choice = self.selected_choice()
        item = self.table.currentItem()
        est = self.estimates[item.data(0, Qt.ItemDataRole.UserRole)] if item is not None else None
        self.fit_summary.setText(f"{choice.name}: {est.summary}." if choice and est else "")
        ok = choice is not None and choice.complete and self.detail is not None
        self.download_button.setEnabled(ok)
        self.download_button.setText(f"Download {choice.name} ({format_bytes(choice.size)})" if ok and choice
                                     else "Download")

    def _download(self) -> None:
        choice = self.selected_choice()
        if choice is None or not choice.complete or self.detail is None:
            return
        self.download_requested.emit(self.detail.repo_id, self.detail.commit, list(choice.files))

    def gated_error(self, exc: GatedRepo) -> None:
        link = f"<a href='{html.escape(exc.url)}'>Accept the terms</a>"
        self.gate_note.setText(f"<b>Gated:</b> {html.escape(exc.message)} {link}, then add your Hub token in Settings.")
        self.gate_note.show()
