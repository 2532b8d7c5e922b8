"""The Playground's "Step by step" mode: one token at a time, with the whole next-token distribution.

For each position the engine (``EngineClient.next_token``) reports the model's own distribution,
what is left after the sampler chain (logit bias, penalties, then greedy, or top-k, typical-p,
top-p, min-p, temperature and a draw), how many tokens each stage kept, and the drawn token. The
view shows both distributions side by side, the stages as one line and in words, and lets the
user accept the drawn token or click another one. The chosen tokens are the continuation the next
request starts from; they survive changes to the prompt and the settings until "Start over".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QHelpEvent, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTextEdit,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.gui.distribution_chart import MAX_ROWS, DistributionChart, format_percent, visible_token
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.theme import theme_notifier

RUN_STEPS = 10
PROMPT_TAIL_CHARS = 300  # the prompt's end, enough to read what the next token continues
END_NOTE = "The model would end the text here (end-of-text token)."


def _quoted(text: str) -> str:
    """A token in quotes for a sentence: spaces kept (they read fine inside quotes), the rest visible."""
    shown = text.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍") if text else "∅"
    return f"'{shown}'"


def _share(value: float) -> str:
    """A parameter share such as 0.95 or 0.05 as a percentage ("95%", "5%", "2.5%")."""
    return f"{value * 100:.3g}%"


def removed_ids(result: dict[str, Any]) -> set[int]:
    """Tokens of the "before" list that the sampler chain certainly removed.

    The "after" list holds only the top tokens that survive: when it holds all ``kept`` tokens,
    everything else was removed. Otherwise, if no stage reordered the tokens (logit bias and
    penalties change scores, typical-p does not keep by rank), the survivors are the ``kept``
    likeliest, so the rest of "before" was removed; if a stage did reorder, nothing is certain.
    """
    before, after = result.get("before", []), result.get("after", [])
    kept = int(result.get("kept", len(after)))
    before_ids = [int(r["token_id"]) for r in before]
    after_ids = {int(r["token_id"]) for r in after}
    if len(after) >= kept:
        return set(before_ids) - after_ids
    has_history = int(result.get("position", 0)) > int(result.get("prompt_tokens", 0))
    names = {s.get("name") for s in result.get("stages", [])}
    reordered = "logit_bias" in names or "typical_p" in names or ("penalties" in names and has_history)
    return set() if reordered else set(before_ids[kept:])


def _likeliest(n: int, kind: str = "likeliest") -> str:
    return f"only the {kind} token" if n == 1 else f"the {n:,} {kind} tokens"


def stage_line(result: dict[str, Any], params: SamplingParams) -> str:
    """The pipeline in one line: "49,152 tokens → top-k: 40 → top-p: 12 → … → drawn: ' Paris' (62.1%)"."""
    parts = []
    labels = {"logit_bias": "logit bias", "penalties": "penalties", "top_k": "top-k", "typical_p": "typical-p",
              "top_p": "top-p", "min_p": "min-p"}
    greedy = False
    for stage in result.get("stages", []):
        name, kept = stage.get("name"), int(stage.get("kept", 0))
        if name == "vocabulary":
            parts.append(f"{kept:,} tokens")
        elif name == "temperature":
            parts.append(f"temperature {params.temperature:.2f}")
        elif name == "greedy":
            greedy = True
            parts.append(f"greedy (temperature 0): {kept:,}")
        else:
            parts.append(f"{labels.get(name, str(name))}: {kept:,}")
    sampled = result.get("sampled") or {}
    verb = "taken" if greedy else "drawn"
    parts.append(f"{verb}: {_quoted(str(sampled.get('text', '')))} ({format_percent(float(sampled.get('prob', 0)))})")
    return " → ".join(parts)


def explain(result: dict[str, Any], params: SamplingParams, history: list[int]) -> str:
    """What each stage changed, in plain words, in chain order."""
    clauses: list[str] = []
    previous = 0
    filtered = False  # a filter came before: later ones "then" act on what it left
    for stage in result.get("stages", []):
        name, kept = stage.get("name"), int(stage.get("kept", 0))
        removed = previous - kept
        then = "then " if filtered else ""
        if name == "vocabulary":
            pass
        elif name == "logit_bias":
            n = len(params.logit_bias)
            clause = f"the logit bias shifted the scores of {n} token{'s' if n != 1 else ''}"
            clauses.append(clause + (f" and banned {removed}" if removed > 0 else ""))
        elif name == "penalties":
            window = history[-params.repeat_last_n:] if params.repeat_last_n > 0 else []
            if not window:
                clauses.append("the repetition penalties had nothing to act on yet (they look only at the "
                               "tokens chosen after the prompt)")
            else:
                what = []
                if params.repeat_penalty != 1:
                    what.append(f"repeat ×{params.repeat_penalty:g}")
                if params.frequency_penalty:
                    what.append(f"frequency {params.frequency_penalty:g} per use")
                if params.presence_penalty:
                    what.append(f"presence {params.presence_penalty:g}")
                lowers = params.repeat_penalty >= 1 and params.frequency_penalty >= 0 and params.presence_penalty >= 0
                distinct = len(set(window))
                clauses.append(f"the repetition penalties ({', '.join(what)}) {'lowered' if lowers else 'changed'} "
                               f"the scores of the {distinct} different token{'s' if distinct != 1 else ''} "
                               f"among the last {len(window)} chosen")
        elif name == "greedy":
            clauses.append("temperature 0 means greedy: the single likeliest token is always taken, so top-k, "
                           "top-p, min-p and the random draw play no part")
        elif name == "top_k":
            if removed > 0:
                clauses.append(f"top-k {params.top_k} kept {_likeliest(kept)}")
                filtered = True
            else:
                clauses.append(f"top-k {params.top_k} removed nothing (only {previous:,} tokens were left)")
        elif name == "typical_p":
            if removed > 0:
                clauses.append(f"typical-p {params.typical_p:g} {then}kept {_likeliest(kept, 'most typical')} "
                               f"(surprise nearest the average), enough to hold {_share(params.typical_p)} "
                               f"of the probability, and dropped {removed:,}")
                filtered = True
            else:
                clauses.append(f"typical-p {params.typical_p:g} removed nothing")
        elif name == "top_p":
            if removed > 0:
                clauses.append(f"top-p {params.top_p:g} {then}kept {_likeliest(kept)}, "
                               + ("which alone holds" if kept == 1 else "the fewest that together hold")
                               + f" at least {_share(params.top_p)} of the probability left")
                filtered = True
            else:
                clauses.append(f"top-p {params.top_p:g} removed nothing (all {previous:,} tokens were needed to "
                               f"reach {_share(params.top_p)})")
        elif name == "min_p":
            if removed > 0:
                clauses.append(f"min-p {params.min_p:g} {then}dropped {removed:,} token{'s' if removed != 1 else ''} "
                               f"less likely than {_share(params.min_p)} of the top token, leaving {kept:,}")
                filtered = True
            else:
                clauses.append(f"min-p {params.min_p:g} removed nothing: every token left is at least "
                               f"{_share(params.min_p)} as likely as the top one")
        elif name == "temperature":
            t = params.temperature
            if t < 1:
                how = "sharpened the shares of what was left (below 1 the likeliest gain)"
            elif t > 1:
                how = "flattened the shares of what was left (above 1 the less likely gain)"
            else:
                how = "left the shares of what was left as they were"
            clauses.append(f"temperature {t:.2f} {how}; it changes the shares, not which tokens stay")
        previous = kept
    sampled = result.get("sampled") or {}
    token, chance = _quoted(str(sampled.get("text", ""))), format_percent(float(sampled.get("prob", 0)))
    if params.temperature == 0:
        clauses.append(f"{token} is taken")
    else:
        seed = result.get("seed")
        source = f" (seed {seed})" if seed is not None else ""
        kept = int(result.get("kept", 0))
        if kept == 1:
            clauses.append(f"only {token} was left, so the draw{source} could only pick it")
        else:
            clauses.append(f"the random draw{source} among the {kept:,} tokens left picked {token}, "
                           f"which had a {chance} chance")
    text = "; ".join(clauses) + "."
    return text[:1].upper() + text[1:]


def _bold(widget: QWidget) -> None:
    font = widget.font()
    font.setBold(True)
    widget.setFont(font)


def _shade(prob: float) -> QColor:
    """Background for a chosen token: red for unlikely through amber to green for likely, translucent so
    the text stays readable on light and dark backgrounds."""
    p = min(max(prob, 0.0), 1.0)
    return QColor.fromHsvF(0.33 * p, 0.75, 0.95, 0.35)


class StepView(QWidget):
    """Step mode over ``engine``; ``source()`` gives ``{"prompt": ...}`` or ``{"messages": ...}``,
    ``params()`` the sampling settings (both read again for every step)."""

    status = Signal(str)

    def __init__(self, engine: QtEngine, source: Callable[[], dict[str, Any]],
                 params: Callable[[], SamplingParams], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.source = source
        self.params = params
        self.chosen: list[int] = []
        # One entry per chosen token: token_id, text, prob (the model's, or None), after_prob, how.
        self.chosen_tokens: list[dict[str, Any]] = []
        self.last_result: dict[str, Any] = {}
        self.last_latency_ms: float = 0.0
        self.ended = False  # the drawn end-of-text token was accepted: the walk is over
        self._result_chosen: list[int] | None = None  # the continuation last_result belongs to
        self._in_flight = False
        self._serial = 0
        self._clicked_at = 0.0
        self._run_left = 0
        self._running = False
        self._spans: list[tuple[int, int, str]] = []  # (start, end, tooltip) of chosen tokens in the text
        self._prompt_tail = ""

        self.text = QTextEdit()
        self.text.setObjectName("stepText")
        self.text.setReadOnly(True)
        self.text.setPlaceholderText("The prompt's end and the tokens you choose appear here.")
        self.text.setMinimumHeight(70)
        self.text.setMaximumHeight(140)
        self.text.viewport().installEventFilter(self)

        self.next_button = QPushButton("Next token")
        self.next_button.setObjectName("stepNext")
        self.next_button.setToolTip("Show the distribution for the next token after the text so far")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setObjectName("stepAccept")
        self.accept_button.setToolTip("Append the drawn token and show the next distribution")
        self.run_button = QPushButton(f"Run {RUN_STEPS}")
        self.run_button.setObjectName("stepRun")
        self.run_button.setToolTip(f"Accept the drawn token {RUN_STEPS} times in a row")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setObjectName("stepUndo")
        self.undo_button.setToolTip("Drop the last chosen token and show its distribution again")
        self.start_over_button = QPushButton("Start over")
        self.start_over_button.setObjectName("stepStartOver")
        self.start_over_button.setToolTip("Forget the chosen tokens")
        self.next_button.clicked.connect(self.next_token)
        self.accept_button.clicked.connect(self.accept)
        self.run_button.clicked.connect(self.toggle_run)
        self.undo_button.clicked.connect(self.undo)
        self.start_over_button.clicked.connect(self.start_over)
        self.timing = QLabel("")
        self.timing.setObjectName("stepTiming")
        buttons = QHBoxLayout()
        for button in (self.next_button, self.accept_button, self.run_button, self.undo_button,
                       self.start_over_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.timing)

        self.note = QLabel("")
        self.note.setObjectName("stepNote")
        self.note.setWordWrap(True)
        _bold(self.note)
        self.note.hide()
        self.error = QLabel("")
        self.error.setObjectName("stepError")
        self.error.setWordWrap(True)
        self.error.hide()

        self.before_chart = DistributionChart("Model's distribution")
        self.before_chart.setObjectName("stepBeforeChart")
        self.after_chart = DistributionChart("After sampling settings")
        self.after_chart.setObjectName("stepAfterChart")
        self.after_chart.placeholder = "What the sampling settings leave to draw from appears here."
        self.before_chart.token_picked.connect(lambda token_id, _text: self.pick(token_id))
        self.after_chart.token_picked.connect(lambda token_id, _text: self.pick(token_id))
        charts = QHBoxLayout()
        charts.addWidget(self.before_chart, 1)
        charts.addWidget(self.after_chart, 1)

        self.stages = QLabel("")
        self.stages.setObjectName("stepStages")
        self.stages.setWordWrap(True)
        _bold(self.stages)
        self.stages.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.explanation = QLabel("")
        self.explanation.setObjectName("stepExplanation")
        self.explanation.setWordWrap(True)
        self.explanation.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        layout.addWidget(self.note)
        layout.addWidget(self.error)
        layout.addLayout(charts, 1)
        layout.addWidget(self.stages)
        layout.addWidget(self.explanation)
        self._update_buttons()
        self._set_colours()
        # Colours taken from the palette (the text's per character, the labels') are redone when the look
        # changes. (Style sheets with palette(...) would keep the colours of the look they were polished in.)
        theme_notifier().changed.connect(self._on_theme_changed)

    def _on_theme_changed(self, _dark: bool) -> None:
        if shiboken6.isValid(self):
            self._set_colours()
            self._render_text()

    def _set_colours(self) -> None:
        app_palette = QApplication.palette()
        for label, role in ((self.timing, QPalette.ColorRole.PlaceholderText),
                            (self.error, QPalette.ColorRole.BrightText)):  # the theme's red, light or dark
            palette = label.palette()
            palette.setColor(QPalette.ColorRole.WindowText, app_palette.color(role))
            label.setPalette(palette)

    # -- actions (the buttons, and public for tests) -------------------------------------------------
    def next_token(self) -> None:
        """Compute the distribution at the current position (after the prompt and the chosen tokens)."""
        if self._in_flight:
            return
        self._clicked_at = time.perf_counter()
        self.ended = False
        self._request()

    def accept(self) -> None:
        """Append the drawn token and compute the next distribution; on an end-of-text token, end the walk."""
        if self._in_flight or self.ended or not self._fresh():
            return
        self._clicked_at = time.perf_counter()
        result = self.last_result
        if result.get("is_end"):
            self.ended = True
            self._stop_run()
            self._show_note(END_NOTE + " The walk is over: Undo, click another token, or Start over.")
            self._update_buttons()
            self.status.emit("The model ended the text.")
            return
        sampled = result["sampled"]
        self._append(int(sampled["token_id"]), "drawn")
        if self._running:
            self._run_left -= 1
        self._request()

    def pick(self, token_id: int) -> None:
        """Append ``token_id`` (a token from either chart) instead of the drawn one, then compute the next."""
        if self._in_flight or not self._fresh():
            return
        sampled = int(self.last_result["sampled"]["token_id"])
        if token_id == sampled and self.last_result.get("is_end"):
            self._stop_run()
            self.accept()  # the drawn end-of-text token: the same as accepting it, the walk ends
            return
        self._clicked_at = time.perf_counter()
        self._stop_run()
        self.ended = False
        self._append(int(token_id), "drawn" if token_id == sampled else "picked")
        self._request()

    def undo(self) -> None:
        """Drop the last chosen token and show the distribution at its position again."""
        if self._in_flight:
            return
        self._clicked_at = time.perf_counter()
        self._stop_run()
        if self.chosen:
            self.chosen.pop()
            self.chosen_tokens.pop()
            self._render_text()
        elif not self.ended:
            return
        self.ended = False
        self._request()

    def start_over(self) -> None:
        """Forget the chosen tokens and the shown distribution."""
        self._stop_run()
        self._serial += 1  # a reply still on its way belongs to the old walk
        self._in_flight = False
        self.chosen.clear()
        self.chosen_tokens.clear()
        self.ended = False
        self._clear_result()
        self._show_note("")
        self._show_error("")
        self.timing.setText("")
        self._render_text()
        self._update_buttons()
        self.status.emit("Started over.")

    def toggle_run(self) -> None:
        """"Run 10" starts accepting drawn tokens; pressed again ("Stop") it stops after the current step."""
        if self._running:
            self._stop_run()
        else:
            self.run(RUN_STEPS)

    def run(self, steps: int = RUN_STEPS) -> None:
        """Accept the drawn token ``steps`` times in a row (stops early at the end of the text or an error)."""
        if self._running or self.ended:
            return
        self._running, self._run_left = True, steps
        self._update_buttons()
        self._run_step()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def busy(self) -> bool:
        """A request is in flight."""
        return self._in_flight

    # -- requests -------------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        """Whether ``last_result`` is the distribution at the current position."""
        return bool(self.last_result) and self._result_chosen == self.chosen

    def _run_step(self) -> None:
        if not self._running or self._in_flight:
            return
        if self._run_left <= 0 or self.ended:
            self._stop_run()
        elif self._fresh():
            self.accept()
        else:
            self._clicked_at = time.perf_counter()
            self._request()

    def _stop_run(self) -> None:
        if self._running:
            self._running, self._run_left = False, 0
            self._update_buttons()

    def _request(self) -> None:
        try:
            source = dict(self.source())
            params = self.params()
        except DesktopLLMError as exc:
            self._fail(str(exc))
            return
        if self.engine.busy:
            self._fail("The model is busy with another reply. Try again when it has finished.")
            return
        continuation = list(self.chosen)
        self._serial += 1
        serial = self._serial
        self._in_flight = True
        self._update_buttons()
        self._update_prompt(source)

        def job(client: Any) -> dict[str, Any]:
            return client.next_token(**source, continuation=continuation, params=params, top=MAX_ROWS)

        self.engine.call(job, lambda result: self._on_result(serial, result, params, continuation),
                         lambda message: self._on_error(serial, message), busy=True)

    def _on_result(self, serial: int, result: dict[str, Any], params: SamplingParams,
                   continuation: list[int]) -> None:
        if serial != self._serial or not shiboken6.isValid(self):
            return  # from before a "Start over", or the view was closed meanwhile
        self._in_flight = False
        self.last_result = result
        self._result_chosen = continuation
        sampled = result.get("sampled") or {}
        drawn = int(sampled.get("token_id", -1))
        self.before_chart.set_rows(result.get("before", []), drawn)
        self.before_chart.set_removed(removed_ids(result))
        self.after_chart.set_rows(result.get("after", []), drawn)
        # Paint now, so the latency covers what the user sees, not just the data handed over.
        self.before_chart.repaint()
        self.after_chart.repaint()
        self.last_latency_ms = (time.perf_counter() - self._clicked_at) * 1000
        self.stages.setText(stage_line(result, params))
        self.explanation.setText(explain(result, params, continuation))
        self.timing.setText(f"distribution shown in {self.last_latency_ms:.0f} ms "
                            f"(engine {float(result.get('ms', 0)):.0f} ms)")
        self._show_error("")
        stop = self._limit_note(params)
        if result.get("is_end"):
            self._show_note(END_NOTE)
        else:
            self._show_note(stop)
        if self._running and (result.get("is_end") or stop or self._run_left <= 0):
            self._stop_run()
        self._update_buttons()
        self.status.emit(f"Next token: {_quoted(str(sampled.get('text', '')))} "
                         f"({format_percent(float(sampled.get('prob', 0)))}); {len(self.chosen)} chosen so far.")
        if self._running:
            QTimer.singleShot(0, self._run_step)  # let the window paint between steps

    def _on_error(self, serial: int, message: str) -> None:
        if serial != self._serial or not shiboken6.isValid(self):
            return
        self._in_flight = False
        self._fail(message)

    def _fail(self, message: str) -> None:
        self._stop_run()
        if not self._fresh():
            self._clear_result()  # the charts would show another position's distribution
        self._show_error(message)
        self._update_buttons()
        self.status.emit(message)

    def _limit_note(self, params: SamplingParams) -> str:
        """Where a normal generation with these settings would have stopped before this position."""
        if len(self.chosen) >= params.max_tokens:
            return f"A normal generation would stop here: max_tokens is {params.max_tokens}."
        written = "".join(t["text"] for t in self.chosen_tokens)
        for stop in params.stop:
            if stop in written:
                return f"A normal generation would stop here: the stop sequence {_quoted(stop)} appeared."
        return ""

    # -- display --------------------------------------------------------------------------------------
    def _clear_result(self) -> None:
        self.last_result = {}
        self._result_chosen = None
        self.before_chart.clear()
        self.after_chart.clear()
        self.stages.setText("")
        self.explanation.setText("")

    def _show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _update_buttons(self) -> None:
        idle = not self._in_flight
        fresh = self._fresh()
        self.next_button.setEnabled(idle and not self._running)
        self.accept_button.setEnabled(idle and fresh and not self.ended and not self._running)
        self.undo_button.setEnabled(idle and not self._running and (bool(self.chosen) or self.ended))
        self.start_over_button.setEnabled(idle and not self._running
                                          and (bool(self.chosen) or bool(self.last_result) or self.ended))
        # While running the button is "Stop" and stays enabled even while a step is in flight.
        self.run_button.setText("Stop" if self._running else f"Run {RUN_STEPS}")
        self.run_button.setEnabled(self._running or (idle and not self.ended))

    def _append(self, token_id: int, how: str) -> None:
        """Add a chosen token with what the last result knew of it (its text and probabilities)."""
        result = self.last_result
        before = {int(r["token_id"]): r for r in result.get("before", [])}
        after = {int(r["token_id"]): r for r in result.get("after", [])}
        sampled = result.get("sampled") or {}
        row = before.get(token_id) or after.get(token_id) or {}
        text = str(row.get("text", sampled.get("text", "") if token_id == sampled.get("token_id") else ""))
        if token_id in before:
            prob: float | None = float(before[token_id]["prob"])
        elif token_id == sampled.get("token_id") and sampled.get("logprob") is not None:
            prob = math.exp(float(sampled["logprob"]))
        else:
            prob = None
        if token_id in after:
            after_prob: float | None = float(after[token_id]["prob"])
        elif token_id in removed_ids(result):
            after_prob = 0.0
        else:
            after_prob = None
        entry = {"token_id": token_id, "text": text, "prob": prob, "after_prob": after_prob, "how": how}
        self.chosen.append(token_id)
        self.chosen_tokens.append(entry)
        self._append_text(entry)

    def _update_prompt(self, source: dict[str, Any]) -> None:
        if "messages" in source:
            messages = source.get("messages") or []
            last = messages[-1] if messages else {}
            tail = f"[{last.get('role', '')}] {last.get('content', '')}" if last else ""
        else:
            tail = str(source.get("prompt", ""))
        if len(tail) > PROMPT_TAIL_CHARS:
            tail = "…" + tail[-PROMPT_TAIL_CHARS:]
        if tail != self._prompt_tail:
            self._prompt_tail = tail
            self._render_text()

    def _render_text(self) -> None:
        self.text.clear()
        self._spans = []
        cursor = QTextCursor(self.text.document())
        grey = QTextCharFormat()
        grey.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        cursor.insertText(self._prompt_tail, grey)
        for entry in self.chosen_tokens:
            self._append_text(entry)

    def _append_text(self, entry: dict[str, Any]) -> None:
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        shown = entry["text"] or "∅"
        prob = entry["prob"] if entry["prob"] is not None else entry["after_prob"]
        fmt = QTextCharFormat()
        fmt.setForeground(self.palette().color(QPalette.ColorRole.Text))
        if prob is not None:
            fmt.setBackground(_shade(prob))
        tip = [f"“{visible_token(entry['text'])}”  (token id {entry['token_id']})",
               "drawn by the sampler" if entry["how"] == "drawn" else "picked by you"]
        if entry["prob"] is not None:
            tip.append(f"model's probability {format_percent(entry['prob'])}")
        if entry["after_prob"] is not None:
            tip.append(f"after the sampling settings {format_percent(entry['after_prob'])}")
        start = cursor.position()
        cursor.insertText(shown, fmt)
        self._spans.append((start, cursor.position(), "\n".join(tip)))
        self.text.setTextCursor(cursor)
        self.text.ensureCursorVisible()

    def text_tooltip_at(self, point: QPointF) -> str | None:
        """The tooltip of the chosen token under ``point`` (viewport coordinates) in the text area."""
        offset = QPointF(self.text.horizontalScrollBar().value(), self.text.verticalScrollBar().value())
        pos = self.text.document().documentLayout().hitTest(point + offset, Qt.HitTestAccuracy.ExactHit)
        if pos < 0:
            return None
        for start, end, tip in self._spans:
            if start <= pos < end:
                return tip
        return None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.text.viewport() and event.type() == QEvent.Type.ToolTip:
            assert isinstance(event, QHelpEvent)
            tip = self.text_tooltip_at(QPointF(event.pos()))
            if tip:
                QToolTip.showText(event.globalPos(), tip, self.text.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().eventFilter(watched, event)

    def shown_text(self) -> str:
        """The text area's plain text (the prompt's tail and the chosen tokens)."""
        return self.text.toPlainText()
