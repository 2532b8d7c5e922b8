"""The Playground's parameter panel: every sampling parameter, basic and advanced, with presets.

Each field shows its range and a one-line explanation (from core.sampling_fields); the ones the
loaded backend cannot honour are disabled with the reason. Presets: built-in and the user's
(saved, renamed, deleted, imported and exported as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core import user_presets
from desktop_llm.core.errors import DesktopLLMError, InvalidRequest
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.sampling_fields import (
    FIELDS,
    SamplingField,
    check_values,
    format_logit_bias,
    parse_logit_bias,
    unsupported_reason,
)
from desktop_llm.gui.spin_boxes import SpecialSpinBox

# Ask before a file dialog in tests: they set these to a path instead of a person picking one.
FileAsker = Callable[[str, str], str]


def _spin(f: SamplingField) -> QSpinBox | QDoubleSpinBox:
    if f.kind == "float":
        spin: QSpinBox | QDoubleSpinBox = QDoubleSpinBox()
        spin.setDecimals(3 if f.step < 0.05 else 2)
    else:
        spin = SpecialSpinBox()
    spin.setRange(f.lo, f.hi)  # type: ignore[arg-type]
    spin.setSingleStep(f.step)  # type: ignore[arg-type]
    spin.setSpecialValueText(f.off)
    spin.setKeyboardTracking(False)
    spin.setMinimumWidth(100)
    return spin


class ParamsPanel(QWidget):
    """All sampling parameters; ``changed`` after each edit, ``params()`` the SamplingParams to run with."""

    changed = Signal()
    status = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend: str | None = None
        self.editors: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        self.ask_open: FileAsker = lambda title, filt: QFileDialog.getOpenFileName(self, title, "", filt)[0]
        self.ask_save: FileAsker = lambda title, filt: QFileDialog.getSaveFileName(self, title, "", filt)[0]
        self.ask_name: Callable[[str, str], str | None] = self._ask_name

        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        self.preset_combo.setToolTip("Apply a preset: a named set of the values below.")
        self.preset_combo.activated.connect(lambda _i: self.apply_preset(self.preset_combo.currentText()))
        self.preset_note = QLabel("")
        self.preset_note.setWordWrap(True)
        self.preset_note.setObjectName("presetNote")
        buttons = QGridLayout()
        self.preset_buttons: dict[str, QPushButton] = {}
        for key, text, tip, slot in (
            ("save", "Save…", "Save these values as a preset of your own", self._save_clicked),
            ("rename", "Rename…", "Rename the selected preset of yours", self._rename_clicked),
            ("delete", "Delete", "Delete the selected preset of yours", self._delete_clicked),
            ("import", "Import…", "Add presets from a JSON file", self._import_clicked),
            ("export", "Export…", "Write the selected preset to a JSON file", self._export_clicked),
        ):
            button = QPushButton(text)
            button.setObjectName(f"preset_{key}")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            self.preset_buttons[key] = button
            buttons.addWidget(button, len(self.preset_buttons) > 3, (len(self.preset_buttons) - 1) % 3)
        preset_box = QGroupBox("Presets")
        pl = QVBoxLayout(preset_box)
        pl.addWidget(self.preset_combo)
        pl.addLayout(buttons)
        pl.addWidget(self.preset_note)

        groups = {"basic": QGroupBox("Basic"), "advanced": QGroupBox("Advanced")}
        forms = {name: QFormLayout(box) for name, box in groups.items()}
        for f in FIELDS:
            editor = self._editor(f)
            editor.setObjectName(f"param_{f.name}")
            tip = f.help + (f" Range {f.lo:g} to {f.hi:g}." if f.lo is not None and f.kind != "seed" else "")
            editor.setToolTip(tip)
            label = QLabel(f.label)
            label.setToolTip(tip)
            self.editors[f.name] = editor
            self.labels[f.name] = label
            forms[f.group].addRow(label, editor)
            help_label = QLabel(f"<small>{f.help}</small>")
            help_label.setWordWrap(True)
            help_label.setObjectName(f"help_{f.name}")
            forms[f.group].addRow(help_label)
        self.error = QLabel("")
        self.error.setObjectName("paramsError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828")

        inner = QWidget()
        il = QVBoxLayout(inner)
        il.addWidget(preset_box)
        il.addWidget(groups["basic"])
        il.addWidget(groups["advanced"])
        il.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # Explanations wrap to the panel's width instead of scrolling sideways.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.error)
        self._quiet = False
        self.set_values(SamplingParams().to_dict())
        self.refresh_presets()

    # -- editors -------------------------------------------------------------------------------
    def _editor(self, f: SamplingField) -> QWidget:
        if f.kind in ("float", "int", "seed"):
            spin = _spin(f)
            spin.valueChanged.connect(self._edited)
            return spin
        if f.kind == "choice":
            combo = QComboBox()
            for value, text in f.choices:
                combo.addItem(text, value)
            combo.currentIndexChanged.connect(self._edited)
            return combo
        edit = QPlainTextEdit()
        edit.setMaximumHeight(70 if f.kind in ("stops", "bias") else 110)
        edit.setPlaceholderText({"stops": "one per line", "bias": "token id: bias, e.g. 198: -100",
                                 "grammar": 'root ::= "yes" | "no"',
                                 "schema": '{"type": "object", "properties": {"name": {"type": "string"}}}'}[f.kind])
        edit.textChanged.connect(self._edited)
        return edit

    def _edited(self, *_args: Any) -> None:
        if self._quiet:
            return
        try:
            self.params()
            self.error.setText("")
        except DesktopLLMError as exc:
            self.error.setText(exc.message)
        self.changed.emit()

    def raw_values(self) -> dict[str, Any]:
        """The form's values as SamplingParams fields, text fields parsed (may raise InvalidRequest)."""
        values: dict[str, Any] = {}
        for f in FIELDS:
            editor = self.editors[f.name]
            if isinstance(editor, QSpinBox | QDoubleSpinBox):
                value = editor.value()
                values[f.name] = None if f.kind == "seed" and value < 0 else value
            elif isinstance(editor, QComboBox):
                values[f.name] = editor.currentData()
            else:
                text = editor.toPlainText()  # type: ignore[attr-defined]
                if f.kind == "stops":
                    # One per line, so a newline is typed as \n (and a tab as \t).
                    values[f.name] = [s.replace("\\n", "\n").replace("\\t", "\t") for s in text.splitlines() if s]
                elif f.kind == "bias":
                    values[f.name] = parse_logit_bias(text)
                elif f.kind == "grammar":
                    values[f.name] = text.strip() or None
                elif f.kind == "schema":
                    values[f.name] = self._schema(text)
        return values

    @staticmethod
    def _schema(text: str) -> dict[str, Any] | None:
        if not text.strip():
            return None
        try:
            schema = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"The JSON schema is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                 f"column {exc.colno}.", "Fix the schema or clear it.") from None
        if not isinstance(schema, dict):
            raise InvalidRequest("The JSON schema must be a JSON object ({...}).")
        return schema

    def params(self) -> SamplingParams:
        """The values to run with; parameters the loaded backend cannot use are left at their defaults."""
        values = self.raw_values()
        default = SamplingParams().to_dict()
        for name in values:
            if unsupported_reason(name, self.backend):
                values[name] = default[name] if name != "logit_bias" else {}
        return check_values(values)

    def set_values(self, values: dict[str, Any]) -> None:
        """Show SamplingParams field values (missing ones keep theirs) without emitting per field."""
        self._quiet = True
        try:
            for f in FIELDS:
                if f.name not in values:
                    continue
                value, editor = values[f.name], self.editors[f.name]
                if isinstance(editor, QSpinBox | QDoubleSpinBox):
                    editor.setValue(-1 if f.kind == "seed" and value is None else value)
                elif isinstance(editor, QComboBox):
                    editor.setCurrentIndex(max(0, editor.findData(value)))
                elif f.kind == "stops":
                    editor.setPlainText("\n".join(s.replace("\n", "\\n").replace("\t", "\\t") for s in value or []))
                elif f.kind == "bias":
                    editor.setPlainText(format_logit_bias({int(k): v for k, v in (value or {}).items()}))
                elif f.kind == "grammar":
                    editor.setPlainText(value or "")
                elif f.kind == "schema":
                    editor.setPlainText(json.dumps(value, indent=2) if value else "")
        finally:
            self._quiet = False
        self._edited()

    def set_backend(self, backend: str | None) -> None:
        """Disable, with the reason, what the loaded backend cannot honour."""
        self.backend = backend
        for f in FIELDS:
            reason = unsupported_reason(f.name, backend)
            self.editors[f.name].setEnabled(reason is None)
            self.labels[f.name].setEnabled(reason is None)
            tip = f.help if reason is None else f"{f.help}\n\nNot available: {reason}"
            self.editors[f.name].setToolTip(tip)
            self.labels[f.name].setToolTip(tip)

    # -- presets -------------------------------------------------------------------------------
    def refresh_presets(self, select: str | None = None) -> None:
        current = select or self.preset_combo.currentText()
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        for preset in user_presets.all_presets():
            self.preset_combo.addItem(preset.name)
            self.preset_combo.setItemData(self.preset_combo.count() - 1, preset.description, 3)  # tooltip role
        index = self.preset_combo.findText(current) if current else -1
        self.preset_combo.setCurrentIndex(max(0, index))
        self.preset_combo.blockSignals(False)
        problem = user_presets.presets_problem()
        if problem:
            self.preset_note.setText(f"<span style='color:#c62828'>{problem}</span>")
        self._update_preset_buttons()

    def _selected(self) -> Any:
        return user_presets.find_preset(self.preset_combo.currentText())

    def _update_preset_buttons(self) -> None:
        preset = self._selected()
        mine = preset is not None and not getattr(preset, "builtin", False)
        self.preset_buttons["rename"].setEnabled(mine)
        self.preset_buttons["delete"].setEnabled(mine)
        self.preset_buttons["export"].setEnabled(preset is not None)

    def apply_preset(self, name: str) -> None:
        preset = user_presets.find_preset(name)
        if preset is None:
            return
        self.set_values(preset.values)
        self.preset_note.setText(preset.description or f"Preset {preset.name}.")
        self._update_preset_buttons()
        self.status.emit(f"Preset {preset.name} applied.")

    def _ask_name(self, title: str, current: str) -> str | None:
        name, ok = QInputDialog.getText(self, title, "Preset name:", text=current)
        return name if ok else None

    def _report(self, exc: DesktopLLMError) -> None:
        self.preset_note.setText(f"<span style='color:#c62828'>{exc.message}</span> {exc.hint or ''}")
        self.status.emit(exc.message)

    def save_preset(self, name: str) -> bool:
        try:
            preset = user_presets.save_preset(name, self.params().to_dict())
        except DesktopLLMError as exc:
            self._report(exc)
            return False
        self.refresh_presets(select=preset.name)
        self.preset_note.setText(f"Saved preset {preset.name}.")
        return True

    def _save_clicked(self) -> None:
        name = self.ask_name("Save preset", "")
        if name is not None:
            self.save_preset(name)

    def _rename_clicked(self) -> None:
        old = self.preset_combo.currentText()
        new = self.ask_name("Rename preset", old)
        if not new or new == old:
            return
        try:
            user_presets.rename_preset(old, new)
        except DesktopLLMError as exc:
            self._report(exc)
            return
        self.refresh_presets(select=new)
        self.preset_note.setText(f"Renamed {old} to {new}.")

    def _delete_clicked(self) -> None:
        name = self.preset_combo.currentText()
        answer = QMessageBox.question(self, "Delete preset", f"Delete the preset {name}?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_preset(name)

    def delete_preset(self, name: str) -> None:
        try:
            user_presets.delete_preset(name)
        except DesktopLLMError as exc:
            self._report(exc)
            return
        self.refresh_presets()
        self.preset_note.setText(f"Deleted preset {name}.")

    def _import_clicked(self) -> None:
        path = self.ask_open("Import presets", "Preset files (*.json);;All files (*)")
        if path:
            self.import_presets(path)

    def import_presets(self, path: str) -> bool:
        try:
            added = user_presets.import_presets(path)
        except DesktopLLMError as exc:
            self._report(exc)
            return False
        self.refresh_presets(select=added[0].name if added else None)
        self.preset_note.setText("Imported " + ", ".join(p.name for p in added) + ".")
        return True

    def _export_clicked(self) -> None:
        name = self.preset_combo.currentText()
        path = self.ask_save("Export preset", "Preset files (*.json)")
        if path:
            self.export_preset(name, path)

    def export_preset(self, name: str, path: str) -> bool:
        try:
            user_presets.export_preset(name, path)
        except (DesktopLLMError, OSError) as exc:
            if isinstance(exc, OSError):
                exc = InvalidRequest(f"Could not write {path}: {exc.strerror or exc}.")
            self._report(exc)
            return False
        self.preset_note.setText(f"Exported {name} to {path}.")
        return True
