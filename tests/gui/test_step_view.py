"""The Playground's step mode on the real engine and the bundled model, driven like a user."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QTextCursor

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.gui.distribution_chart import DistributionChart, visible_token
from desktop_llm.gui.step_view import StepView

PROMPT = "The capital of France is"
STEP_TIMEOUT = 30_000  # a step is well under a second; the machine may be busy


def step_params(**changes) -> SamplingParams:
    return SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7, max_tokens=50).with_updates(
        **changes)


@pytest.fixture()
def step(qtbot, open_window):
    """A StepView over the window's engine; ``settings["params"]`` is what its params() returns."""
    win = open_window()
    settings = {"params": step_params()}
    view = StepView(win.engine, lambda: {"prompt": PROMPT}, lambda: settings["params"])
    qtbot.addWidget(view)
    view.resize(1100, 800)
    view.show()
    return win, view, settings


def press(qtbot, view: StepView, button) -> None:
    """Click a button and wait until the view reports the step's outcome."""
    assert button.isEnabled(), f"{button.text()} is disabled"
    with qtbot.waitSignal(view.status, timeout=STEP_TIMEOUT):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.busy, timeout=STEP_TIMEOUT)


def probs(chart: DistributionChart) -> list[float]:
    return [float(r["prob"]) for r in chart.rows]


def test_step_by_step_walk(qtbot, step):
    _win, view, _settings = step
    assert not view.accept_button.isEnabled()  # nothing to accept before the first distribution
    press(qtbot, view, view.next_button)
    result = view.last_result

    # The model's distribution: 20 tokens, likeliest first; after the settings: fewer, summing to ~1.
    before = probs(view.before_chart)
    assert len(before) == 20
    assert before == sorted(before, reverse=True)
    after = probs(view.after_chart)
    assert 1 <= len(after) <= 20
    assert after == sorted(after, reverse=True)
    if result["kept"] <= 20:  # the chart holds every kept token: their shares add up to 100 %
        assert sum(after) == pytest.approx(1.0, abs=1e-3)
    else:
        assert sum(after) <= 1.0 + 1e-6
    assert view.before_chart.highlight == result["sampled"]["token_id"] == view.after_chart.highlight
    # Tokens the settings removed are marked in the model's chart, never the drawn one.
    assert result["sampled"]["token_id"] not in view.before_chart.removed
    if result["kept"] < 20:
        assert len(view.before_chart.removed) == 20 - sum(
            1 for r in view.before_chart.rows if r["token_id"] in {a["token_id"] for a in result["after"]})

    # The stage line names each filter with the engine's counts, and the explanation says what they did.
    kept = {s["name"]: s["kept"] for s in result["stages"]}
    line = view.stages.text()
    for name, label in (("top_k", "top-k"), ("top_p", "top-p"), ("min_p", "min-p")):
        assert f"{label}: {kept[name]:,}" in line
    assert line.startswith(f"{kept['vocabulary']:,} tokens")
    assert "temperature 0.80" in line and "drawn:" in line
    assert "top-p 0.95" in view.explanation.text() and "min-p 0.05" in view.explanation.text()
    assert re.search(r"distribution shown in \d+ ms \(engine \d+ ms\)", view.timing.text())
    assert view.last_latency_ms > 0

    # Accept: the drawn token joins the text and the next position's distribution appears.
    sampled = result["sampled"]
    text_before = view.shown_text()
    press(qtbot, view, view.accept_button)
    assert view.chosen == [sampled["token_id"]]
    assert view.shown_text() == text_before + sampled["text"]
    assert view.last_result["position"] == result["position"] + 1
    assert len(view.before_chart.rows) == 20
    # The chosen token is shaded by its probability and says so when hovered; the prompt is not.
    cursor = QTextCursor(view.text.document())
    cursor.setPosition(len(PROMPT) + 2)
    assert cursor.charFormat().background().style() != Qt.BrushStyle.NoBrush
    tip = view.text_tooltip_at(QPointF(view.text.cursorRect(cursor).center()))
    assert tip and "drawn by the sampler" in tip and f"token id {sampled['token_id']}" in tip
    cursor.setPosition(3)
    assert view.text_tooltip_at(QPointF(view.text.cursorRect(cursor).center())) is None

    # Click a bar that is not the drawn token: that token is appended instead.
    chart = view.before_chart
    drawn = view.last_result["sampled"]["token_id"]
    index = next(i for i, r in enumerate(chart.rows) if r["token_id"] != drawn and r["text"].strip())
    picked = chart.rows[index]
    assert chart.row_at(chart.row_center(index).y()) == index
    text_before_pick = view.shown_text()
    with qtbot.waitSignal(view.status, timeout=STEP_TIMEOUT):
        qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, pos=chart.row_center(index))
    qtbot.waitUntil(lambda: not view.busy, timeout=STEP_TIMEOUT)
    assert view.chosen == [sampled["token_id"], picked["token_id"]]
    assert view.shown_text() == text_before_pick + picked["text"]
    assert view.chosen_tokens[-1]["how"] == "picked"
    assert view.last_result["position"] == result["position"] + 2

    # Undo drops it and shows the distribution at that position again.
    press(qtbot, view, view.undo_button)
    assert view.chosen == [sampled["token_id"]]
    assert view.shown_text() == text_before_pick
    assert view.last_result["position"] == result["position"] + 1

    # Start over forgets the chosen tokens.
    qtbot.mouseClick(view.start_over_button, Qt.MouseButton.LeftButton)
    assert view.chosen == [] and view.before_chart.rows == []
    assert view.shown_text() == PROMPT


def test_greedy_and_refused_settings(qtbot, step):
    _win, view, settings = step
    settings["params"] = step_params(temperature=0.0)
    press(qtbot, view, view.next_button)
    before, after = view.before_chart.rows, view.after_chart.rows
    assert len(after) == 1 and after[0]["prob"] == pytest.approx(1.0)
    assert after[0]["token_id"] == before[0]["token_id"]
    assert "greedy" in view.stages.text() and "greedy" in view.explanation.text()
    assert "top-k:" not in view.stages.text()  # top-k and the rest play no part when greedy
    # Everything but the one kept token is marked as removed in the model's chart.
    assert view.before_chart.removed == {r["token_id"] for r in before[1:]}

    # Mirostat cannot be shown step by step: the engine's message appears in the view.
    settings["params"] = step_params(mirostat_mode=1)
    with qtbot.waitSignal(view.status, timeout=STEP_TIMEOUT) as reported:
        qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.busy, timeout=STEP_TIMEOUT)
    assert "mirostat" in reported.args[0].lower()
    assert view.error.isVisible() and "mirostat" in view.error.text().lower()

    # The view stays usable: with mirostat off again the next step works and the error goes.
    settings["params"] = step_params()
    press(qtbot, view, view.next_button)
    assert not view.error.isVisible()
    assert len(view.before_chart.rows) == 20
    assert view.accept_button.isEnabled()


def test_chart_rows_clicks_and_visible_tokens(qtbot):
    chart = DistributionChart("Model's distribution")
    qtbot.addWidget(chart)
    chart.resize(400, chart.minimumSizeHint().height())
    chart.show()
    rows = [{"token_id": 5, "text": " Paris", "prob": 0.7, "logprob": -0.36},
            {"token_id": 9, "text": "\n", "prob": 0.2, "logprob": -1.6},
            {"token_id": 2, "text": "", "prob": 0.1, "logprob": -2.3}]
    chart.set_rows(rows, highlight=5)
    chart.set_removed({2})
    assert [visible_token(r["text"]) for r in rows] == ["␣Paris", "⏎", "∅"]
    assert visible_token("\t") == "⇥"
    assert chart.row_at(0) is None  # the title
    assert chart.row_at(chart.height() - 1) is None  # below the last row
    assert "logprob -1.600" in chart.tooltip_for(1) and "removed" in chart.tooltip_for(2)
    with qtbot.waitSignal(chart.token_picked) as picked:
        qtbot.mouseClick(chart, Qt.MouseButton.LeftButton, pos=chart.row_center(1))
    assert picked.args == [9, "\n"]


def test_run_stop_end_of_text_and_empty_prompt(qtbot, step):
    _win, view, settings = step
    # SmolLM2's end tokens (0, 2) banned: every step of a run appends a token.
    settings["params"] = step_params(logit_bias={0: -100.0, 2: -100.0})
    with qtbot.waitSignal(view.status, timeout=STEP_TIMEOUT):
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.run_button.text() == "Stop" and view.run_button.isEnabled()
    assert not view.next_button.isEnabled() and not view.accept_button.isEnabled()
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)  # Stop
    qtbot.waitUntil(lambda: not view.busy and not view.running, timeout=STEP_TIMEOUT)
    stopped_at = len(view.chosen)
    assert stopped_at < 10 and view.run_button.text() == "Run 10"
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.running, timeout=10 * STEP_TIMEOUT)
    assert len(view.chosen) == stopped_at + 10
    assert view.shown_text() == PROMPT + "".join(t["text"] for t in view.chosen_tokens)

    # With the end tokens pushed up, the draw ends the text: Accept ends the walk without appending.
    settings["params"] = step_params(logit_bias={0: 100.0, 2: 100.0})
    press(qtbot, view, view.next_button)
    assert view.last_result["is_end"]
    assert "would end the text here" in view.note.text() and view.note.isVisible()
    chosen = list(view.chosen)
    qtbot.mouseClick(view.accept_button, Qt.MouseButton.LeftButton)
    assert view.chosen == chosen and view.ended
    assert not view.accept_button.isEnabled() and not view.run_button.isEnabled()
    assert view.undo_button.isEnabled()

    # An empty prompt: the page's message is shown and nothing is asked of the engine.
    def no_prompt() -> dict:
        raise InvalidRequest("Write a prompt first.")

    view.source = no_prompt
    qtbot.mouseClick(view.start_over_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(view.status, timeout=1_000) as reported:
        qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    assert reported.args == ["Write a prompt first."]
    assert view.error.isVisible() and view.error.text() == "Write a prompt first."
    assert not view.busy and view.next_button.isEnabled()
