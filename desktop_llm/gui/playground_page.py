"""The Playground: where the app shows how a language model chooses its words.

The prompt (completion or chat) sits on top and the sampling parameters on the right; the tabs
share both: Generate (tokens coloured by probability, alternatives, branches), Step by step (the
next-token distribution before and after the sampling settings), Tokens (the prompt as the model
reads it) and Compare (two to four configurations side by side).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QApplication, QHBoxLayout, QPushButton, QSplitter, QTabWidget, QVBoxLayout, QWidget

from desktop_llm.core import user_presets
from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import ModelRef
from desktop_llm.core.python_snippet import llama_cpp_snippet
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.gui.background import Background
from desktop_llm.gui.compare_view import CompareView
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.playground_generate import GenerateView
from desktop_llm.gui.playground_params import ParamsPanel
from desktop_llm.gui.prompt_editor import PromptEditor
from desktop_llm.gui.step_view import StepView
from desktop_llm.gui.tokenizer_view import TokenizerView

TAB_GENERATE, TAB_STEP, TAB_TOKENS, TAB_COMPARE = range(4)


class PlaygroundPage(QWidget):
    status = Signal(str)
    send_to_chat = Signal(object, dict, str)  # system prompt (or None), sampling values, draft message
    restore_model = Signal(object)  # Compare changed the loaded model: the window loads this one back

    def __init__(self, engine: QtEngine, background: Background, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.prompt = PromptEditor()
        self.params_panel = ParamsPanel()
        self.params_panel.setMinimumWidth(300)
        self.generate_view = GenerateView(engine, self.source, self.params)
        self.step_view = StepView(engine, self.source, self.params)
        self.tokenizer_view = TokenizerView(engine, self.source)
        self.compare_view = CompareView(engine, background, self.source, self.params, user_presets.all_presets)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("playgroundTabs")
        self.tabs.addTab(self.generate_view, "Generate")
        self.tabs.addTab(self.step_view, "Step by step")
        self.tabs.addTab(self.tokenizer_view, "Tokens")
        self.tabs.addTab(self.compare_view, "Compare")

        self.chat_button = QPushButton("Send to chat")
        self.chat_button.setObjectName("sendToChat")
        self.chat_button.setToolTip("Open a new chat with this prompt (ready to send) and these settings")
        self.chat_button.clicked.connect(self._send_to_chat)
        self.python_button = QPushButton("Copy as Python")
        self.python_button.setObjectName("copyAsPython")
        self.python_button.setToolTip("Copy a llama-cpp-python script that runs this prompt with these settings")
        self.python_button.clicked.connect(self.copy_python)
        hand_off = QHBoxLayout()
        hand_off.addStretch(1)
        hand_off.addWidget(self.chat_button)
        hand_off.addWidget(self.python_button)

        prompt_box = QWidget()
        pl = QVBoxLayout(prompt_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.prompt, 1)
        pl.addLayout(hand_off)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(prompt_box)
        left.addWidget(self.tabs)
        left.setSizes([200, 520])
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.params_panel)
        split.setSizes([860, 330])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(split)

        for view in (self.generate_view, self.step_view, self.tokenizer_view, self.compare_view, self.params_panel):
            view.status.connect(self.status)
        self.compare_view.restore_model.connect(self.restore_model)
        self.generate_view.keep_text.connect(self._keep_text)
        self.prompt.changed.connect(self.tokenizer_view.schedule)
        engine.loaded.connect(self.on_model_loaded)
        if engine.loaded_info:
            self.on_model_loaded(engine.loaded_info)

    # -- what every tab runs -----------------------------------------------------------------------
    def source(self) -> dict[str, Any]:
        return self.prompt.source()

    def params(self) -> SamplingParams:
        return self.params_panel.params()

    def _keep_text(self, text: str) -> None:
        self.prompt.keep(text)
        self.status.emit("The text is in the prompt now: edit it, then generate on from there.")

    def on_model_loaded(self, info: dict[str, Any]) -> None:
        self.params_panel.set_backend(info.get("backend"))
        self.tokenizer_view.schedule()

    # -- hand-off ----------------------------------------------------------------------------------
    def _send_to_chat(self) -> None:
        try:
            source, params = self.source(), self.params()
        except DesktopLLMError as exc:
            self.status.emit(exc.message)
            return
        if "prompt" in source:
            system, draft = None, source["prompt"]
        else:
            messages = source["messages"]
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
            users = [m["content"] for m in messages if m["role"] == "user"]
            draft = users[-1] if users else ""
        self.send_to_chat.emit(system, params.to_dict(), draft)

    def python_snippet(self) -> str:
        source, params = self.source(), self.params()
        info = self.engine.loaded_info or {}
        model = ModelRef.from_dict(info["model"]) if info.get("model") else None
        path = model.path if model is not None else "path/to/model.gguf"
        return llama_cpp_snippet(path, params, prompt=source.get("prompt"), messages=source.get("messages"),
                                 n_ctx=info.get("n_ctx"))

    def copy_python(self) -> None:
        try:
            snippet = self.python_snippet()
        except DesktopLLMError as exc:
            self.status.emit(exc.message)
            return
        QApplication.clipboard().setText(snippet)
        self.status.emit("Copied a llama-cpp-python script with this prompt and these settings.")
