"""One chat's own settings: system prompt, model and sampling parameters (defaults come from Settings)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from desktop_llm.gui.sampling_form import SamplingForm


class ChatSettingsPanel(QWidget):
    system_prompt_changed = Signal(str)
    params_changed = Signal(dict)
    reset_requested = Signal()
    pick_model_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatSettingsPanel")
        layout = QVBoxLayout(self)
        title = QLabel("<b>This chat</b>")
        self.model_label = QLabel("Model: none loaded")
        self.model_label.setObjectName("chatModelLabel")
        self.model_label.setWordWrap(True)
        self.model_button = QPushButton("Change model… (Ctrl+K)")
        self.model_button.clicked.connect(self.pick_model_requested)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setObjectName("chatSystemPrompt")
        self.system_prompt.setPlaceholderText("System prompt: how the assistant should behave in this chat")
        self.system_prompt.setMaximumHeight(120)
        # Saved shortly after typing stops, not per keystroke.
        self._prompt_timer = QTimer(self, singleShot=True, interval=400)
        self._prompt_timer.timeout.connect(lambda: self.system_prompt_changed.emit(self.system_prompt_text()))
        self.system_prompt.textChanged.connect(self._on_prompt_typed)
        self.form = SamplingForm()
        self.form.changed.connect(self.params_changed)
        reset = QPushButton("Reset to defaults")
        reset.setObjectName("resetChatSettings")
        reset.setToolTip("Use the defaults from Settings for this chat's parameters and system prompt.")
        reset.clicked.connect(self.reset_requested)
        layout.addWidget(title)
        layout.addWidget(self.model_label)
        layout.addWidget(self.model_button)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_prompt)
        layout.addWidget(QLabel("Sampling"))
        layout.addWidget(self.form)
        layout.addWidget(reset)
        layout.addStretch(1)
        self._quiet = False

    def system_prompt_text(self) -> str:
        return self.system_prompt.toPlainText().strip()

    def _on_prompt_typed(self) -> None:
        if not self._quiet:
            self._prompt_timer.start()

    def flush(self) -> None:
        """Report a system prompt still waiting for its timer (before a message is sent)."""
        if self._prompt_timer.isActive():
            self._prompt_timer.stop()
            self.system_prompt_changed.emit(self.system_prompt_text())

    def show_chat(self, system_prompt: str, params: dict[str, Any], model_name: str | None) -> None:
        """Show a chat's settings without reporting them back as changes."""
        self._quiet = True
        try:
            self._prompt_timer.stop()
            if self.system_prompt_text() != system_prompt:
                self.system_prompt.setPlainText(system_prompt)
            self.form.set_values(params)
        finally:
            self._quiet = False
        self.set_model_name(model_name)

    def set_model_name(self, name: str | None) -> None:
        self.model_label.setText(f"Model: {name}" if name else "Model: none loaded")
