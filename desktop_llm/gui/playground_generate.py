"""The Playground's Generate tab: run the prompt, see every token's probability, branch from alternatives.

Each run is a root of the branch tree; clicking a token and then one of its alternatives runs a
child branch that keeps the text up to that token and continues with the alternative. Selecting
a branch in the tree shows it, so the user can move back and forth between them.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.branch_tree import BranchTree, TokenInfo
from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.reply_stats import reply_figures
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.gui.engine_bridge import QtEngine, SideRun
from desktop_llm.gui.token_view import AlternativesList, TokenView

ALTERNATIVES = 10  # how many alternatives each token brings with the probability view on


def stats_text(done: dict[str, Any]) -> str:
    return " · ".join(reply_figures(done, seed=True))


class GenerateView(QWidget):
    status = Signal(str)
    run_finished = Signal(dict)  # the done event of a run or branch
    keep_text = Signal(str)  # the shown branch's text, to go on from in the prompt

    def __init__(self, engine: QtEngine, source: Callable[[], dict[str, Any]], params: Callable[[], SamplingParams],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.source = source
        self.params = params
        self.tree = BranchTree()
        self.requests: dict[int, dict[str, Any]] = {}  # root id -> its source and params
        self.current: int | None = None
        self.run: SideRun | None = None
        self.running_branch: int | None = None
        self._items: dict[int, QTreeWidgetItem] = {}  # branch id -> its row in the tree

        self.generate_button = QPushButton("Generate (Ctrl+Enter)")
        self.generate_button.setObjectName("playgroundGenerate")
        self.generate_button.clicked.connect(self.generate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("playgroundStop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.show_probs = QCheckBox("Show probabilities")
        self.show_probs.setObjectName("showProbabilities")
        self.show_probs.setChecked(True)
        self.show_probs.setToolTip(f"Colour each token by its probability and keep its top {ALTERNATIVES} "
                                   "alternatives (hover a token to see them; click to branch).")
        self.show_probs.toggled.connect(self._colour_toggled)
        self.back_button = QPushButton("◀ Parent")
        self.back_button.setToolTip("Show the branch this one came from")
        self.back_button.clicked.connect(self.go_parent)
        self.keep_button = QPushButton("Add to prompt")
        self.keep_button.setObjectName("keepText")
        self.keep_button.setToolTip("Put the text shown into the prompt, to edit it and generate on from there")
        self.keep_button.setEnabled(False)
        self.keep_button.clicked.connect(self._keep)
        top = QHBoxLayout()
        for w in (self.generate_button, self.stop_button, self.show_probs):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.keep_button)
        top.addWidget(self.back_button)

        self.view = TokenView()
        self.view.token_clicked.connect(self.select_token)
        self.alternatives = AlternativesList()
        self.alternatives.chosen.connect(self.branch)
        self.alt_caption = QLabel("Click a token to see what else the model could have written there.")
        self.alt_caption.setWordWrap(True)
        self.branches = QTreeWidget()
        self.branches.setObjectName("branchTree")
        self.branches.setHeaderLabels(["Branches"])
        self.branches.currentItemChanged.connect(self._branch_selected)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.alt_caption)
        sl.addWidget(self.alternatives, 1)
        sl.addWidget(self.branches, 1)
        split = QSplitter()
        split.addWidget(self.view)
        split.addWidget(side)
        split.setSizes([620, 280])
        self.legend = QLabel("Token colour: <span style='background:#a5e3a5'>&nbsp;likely&nbsp;</span> "
                             "<span style='background:#ecdf9a'>&nbsp;so-so&nbsp;</span> "
                             "<span style='background:#f1a9a9'>&nbsp;unlikely&nbsp;</span> (the model's own "
                             "probability, before sampling settings). Underlined: chosen by you.")
        self.legend.setWordWrap(True)
        self.stats = QLabel("")
        self.stats.setObjectName("playgroundStats")
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.stats)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.generate)

    # -- runs --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.run is not None

    def generate(self) -> None:
        """Run the prompt with the current settings as a new root branch."""
        if self.busy:
            return
        try:
            source, params = self.source(), self.params()
        except DesktopLLMError as exc:
            self._error(exc.message + (f" {exc.hint}" if exc.hint else ""))
            return
        n = len(self.tree.children(None)) + 1
        branch = self.tree.new_root(f"Run {n} · T {params.temperature:g}" + (f" · seed {params.seed}"
                                                                               if params.seed is not None else ""))
        self.requests[branch.id] = {"source": source, "params": params}
        self._start(branch.id, {**source, "params": params})

    def branch(self, position: int, alternative: dict[str, Any]) -> None:
        """Continue the shown branch from ``position`` with ``alternative`` instead of what was written."""
        if self.busy or self.current is None:
            return
        path = self.tree.path(self.current)
        if path[position].is_alternative(alternative):
            self.status.emit("That is the token already written there; pick another to branch.")
            return
        if alternative.get("token_id") is None:
            self.status.emit("Branching needs token ids, which a remote endpoint does not give; load a local "
                             "model to branch.")
            return
        root = self._root(self.current)
        request = self.requests[root]
        child = self.tree.branch_from(self.current, position, alternative)
        continuation = self.tree.continuation(self.current, position, int(alternative["token_id"]))
        self._start(child.id, {**request["source"], "params": request["params"], "continuation": continuation})

    def _start(self, branch_id: int, request: dict[str, Any]) -> None:
        self.running_branch = branch_id
        self._add_tree_item(branch_id)
        self.show_branch(branch_id)
        request["alternatives"] = ALTERNATIVES if self.show_probs.isChecked() else 0
        self.generate_button.setEnabled(False)
        self.keep_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stats.setText("Running…")
        self.run = self.engine.start_stream(request, lambda e, b=branch_id: self._token(b, e),
                                            lambda e, b=branch_id: self._done(b, e), self._failed)

    def stop(self) -> None:
        if self.run is not None:
            self.run.cancel()

    def _token(self, branch_id: int, event: dict[str, Any]) -> None:
        token = TokenInfo.from_event(event)
        self.tree.branches[branch_id].tokens.append(token)
        if self.current == branch_id:
            self.view.append_token(token)

    def _done(self, branch_id: int, event: dict[str, Any]) -> None:
        self._idle()
        self.tree.branches[branch_id].done = event
        if self.current == branch_id:
            self.stats.setText(stats_text(event))
        self.run_finished.emit(event)

    def _failed(self, message: str) -> None:
        self._idle()
        self._error(message)

    def _idle(self) -> None:
        self.run = None
        self.running_branch = None
        self.keep_button.setEnabled(True)
        self.generate_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _error(self, message: str) -> None:
        self.stats.setText(f"<span style='color:#c62828'>{html.escape(message)}</span>")
        self.status.emit(message)

    # -- showing -----------------------------------------------------------------------------
    def _root(self, branch_id: int) -> int:
        while (parent := self.tree.branches[branch_id].parent) is not None:
            branch_id = parent
        return branch_id

    def _prompt_tail(self, branch_id: int) -> str:
        source = self.requests[self._root(branch_id)]["source"]
        if "prompt" in source:
            text = source["prompt"]
            return text if len(text) <= 600 else "…" + text[-600:]
        last = source["messages"][-1]
        return f"[{last['role']}] {last['content'][-300:]}\n[assistant] "

    def show_branch(self, branch_id: int) -> None:
        self.current = branch_id
        self.view.show_tokens(self._prompt_tail(branch_id), self.tree.path(branch_id))
        done = self.tree.branches[branch_id].done
        self.stats.setText(stats_text(done) if done else ("Running…" if branch_id == self.running_branch else ""))
        self.alternatives.show_token(None, None)
        self.back_button.setEnabled(self.tree.branches[branch_id].parent is not None)
        item = self._items.get(branch_id)
        if item is not None and self.branches.currentItem() is not item:
            self.branches.blockSignals(True)
            self.branches.setCurrentItem(item)
            self.branches.blockSignals(False)

    def _keep(self) -> None:
        if self.current is not None and not self.busy:
            self.keep_text.emit(self.tree.text(self.current))

    def go_parent(self) -> None:
        if self.current is not None and (parent := self.tree.branches[self.current].parent) is not None:
            self.show_branch(parent)

    def select_token(self, index: int) -> None:
        if self.current is None:
            return
        path = self.tree.path(self.current)
        if not 0 <= index < len(path):
            return
        token = path[index]
        self.view.selected = index
        self.alternatives.show_token(index, token)
        if token.alternatives:
            self.alt_caption.setText(f"Token {index + 1}: what the model could have written there. "
                                     "Click one to continue the text with it instead (a new branch).")
        else:
            self.alt_caption.setText("This run kept no alternatives: turn on Show probabilities and generate again.")

    def _add_tree_item(self, branch_id: int) -> None:
        branch = self.tree.branches[branch_id]
        item = QTreeWidgetItem([branch.label])
        item.setData(0, Qt.ItemDataRole.UserRole, branch_id)
        if branch.parent is None:
            self.branches.addTopLevelItem(item)
        else:
            self._items[branch.parent].addChild(item)
            self._items[branch.parent].setExpanded(True)
        self._items[branch_id] = item

    def _branch_selected(self, item: QTreeWidgetItem | None, _previous: Any = None) -> None:
        if item is not None:
            self.show_branch(int(item.data(0, Qt.ItemDataRole.UserRole)))

    def _colour_toggled(self, on: bool) -> None:
        self.view.colour = on
        if self.current is not None:
            self.show_branch(self.current)
