"""The Playground's Compare tab on the real engine and bundled model: columns, one seed, Stop, model switches."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.models import import_model
from desktop_llm.core.presets import BUILTIN_PRESETS
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.compare_view import CompareView
from desktop_llm.gui.engine_bridge import QtEngine

PROMPT = "Once upon a time"


def make_view(qtbot, win, max_tokens: int | dict = 24) -> CompareView:
    """A shown view over the window's engine, once its preset and model lists have arrived."""
    limit = max_tokens if isinstance(max_tokens, dict) else {"value": max_tokens}
    view = CompareView(win.engine, win.background, lambda: {"prompt": PROMPT},
                       lambda: SamplingParams(max_tokens=limit["value"], seed=None),
                       lambda: list(BUILTIN_PRESETS))
    qtbot.addWidget(view)
    view.resize(1100, 600)
    view.show()
    qtbot.waitUntil(lambda: all(c.settings_combo.count() > 1 and c.model_combo.count() > 1 for c in view.columns),
                    timeout=10_000)
    return view


def choose(column, settings: str | None = None, model: str | None = None) -> None:
    if settings is not None:
        index = column.settings_combo.findText(settings)
        assert index >= 0, f"{settings!r} is not offered"
        column.settings_combo.setCurrentIndex(index)
    if model is not None:
        index = column.model_combo.findText(model)
        assert index >= 0, f"{model!r} is not offered"
        column.model_combo.setCurrentIndex(index)


class GapMeter:
    """Ticks every 20 ms on the GUI thread; the longest gap between ticks says how long the window froze."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.ticks = 0
        self.max_gap = 0.0
        self._last = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_gap = max(self.max_gap, now - self._last)
        self._last = now
        self.ticks += 1

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def test_three_presets_side_by_side_with_one_seed_and_a_responsive_window(qtbot, open_window):
    win = open_window()
    view = make_view(qtbot, win)
    assert len(view.columns) == 3
    for column, name in zip(view.columns, ("Deterministic", "Balanced", "Creative"), strict=True):
        choose(column, settings=name)
        assert column.model_combo.currentText() == "Loaded model"

    meter = GapMeter()
    meter.start()
    with qtbot.waitSignal(view.finished, timeout=60_000):
        view.run_all()
        # One engine: the first column runs, the others wait their turn.
        assert view.running and not view.run_button.isEnabled() and view.stop_button.isEnabled()
        assert [c.stats.text() for c in view.columns] == ["Running…", "Waiting…", "Waiting…"]
    meter.stop()

    assert not view.running and view.run_button.isEnabled() and not view.stop_button.isEnabled()
    seed = view.seed
    assert seed is not None and view.notice.text() == f"Seed {seed} for every column"
    for column, name in zip(view.columns, ("Deterministic", "Balanced", "Creative"), strict=True):
        done = column.result
        assert done is not None and column.error is None and column.state == "done"
        assert done["seed"] == seed  # the engine really used the shared seed
        assert column.text.toPlainText() == done["text"] and done["text"].strip()
        stats = column.stats.text()
        generated = done["usage"]["completion_tokens"]
        assert 0 < generated <= 24
        assert f"{done['usage']['prompt_tokens']} prompt tokens" in stats and f"{generated} generated" in stats
        assert "first token" in stats and "tokens/s" in stats
        assert f"{win.engine.loaded_info['model']['name']} · {name} · seed {seed}" in stats

    # Greedy is greedy: the Deterministic column is what a direct greedy generation gives.
    greedy = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0,
                            max_tokens=24, seed=seed)
    assert view.columns[0].text.toPlainText() == win.engine.client.generate(prompt=PROMPT, params=greedy).text()

    assert meter.ticks > 10 and meter.max_gap < 0.5, f"the window froze for {meter.max_gap * 1000:.0f} ms"


def test_stop_skips_the_rest_and_leaves_the_engine_usable(qtbot, open_window):
    win = open_window()
    limit = {"value": 400}  # long enough to stop in the middle
    view = make_view(qtbot, win, limit)
    statuses: list[str] = []
    view.status.connect(statuses.append)

    with qtbot.waitSignal(view.finished, timeout=60_000):
        view.run_all()
        qtbot.waitUntil(lambda: len(view.columns[0].text.toPlainText()) > 0, timeout=30_000)
        view.stop()
        assert not view.stop_button.isEnabled()

    first, *rest = view.columns
    assert first.state == "stopped" and first.result["finish_reason"] == "cancelled"
    assert first.result["usage"]["completion_tokens"] < 400 and "stopped" in first.stats.text()
    for column in rest:
        assert column.state == "stopped" and column.result is None and column.text.toPlainText() == ""
        assert column.stats.text() == "Stopped before it ran."
    assert statuses[-1] == "Compare stopped."
    assert not view.running and not win.engine.busy

    # The engine is usable straight away: a whole new run completes.
    limit["value"] = 8
    with qtbot.waitSignal(view.finished, timeout=60_000):
        view.run_all()
    assert all(c.state == "done" and c.result["usage"]["completion_tokens"] > 0 for c in view.columns)


@pytest.fixture()
def private_library(monkeypatch, tmp_path):
    """A library of its own (imports and HF cache), so the models this test adds never reach other tests."""
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def test_columns_on_other_models_load_them_grouped_and_hand_back_the_original(
        qtbot, open_window, private_library, bundled_ref):
    # A second model: a copy of the bundled file, so it loads fast and greedy output must match.
    copy = Path(shutil.copy(bundled_ref.path, private_library / "SmolLM2-copy.gguf"))
    gone = Path(shutil.copy(bundled_ref.path, private_library / "gone.gguf"))
    import_model(copy)
    import_model(gone)
    win = open_window()
    limit = {"value": 16}  # short replies: this test is about the order of loads and runs
    view = make_view(qtbot, win, limit)
    qtbot.waitUntil(lambda: view.columns[0].model_combo.count() == 4, timeout=10_000)
    gone.unlink()  # deleted after it was listed: its load fails in the engine

    view.add_column()
    c1, c2, c3, c4 = view.columns
    choose(c1, "Deterministic", "SmolLM2-copy.gguf")
    choose(c2, "Deterministic", "Loaded model")
    choose(c3, "Deterministic", "gone.gguf")
    choose(c4, "Creative", "SmolLM2-copy.gguf")

    seen: list[tuple[str, list[str]]] = []  # each status with what the columns showed then
    view.status.connect(lambda text: seen.append((text, [c.stats.text() for c in view.columns])))
    restored: list = []
    view.restore_model.connect(restored.append)
    meter = GapMeter()
    meter.start()
    with qtbot.waitSignal(view.finished, timeout=60_000):
        view.run_all()
    meter.stop()

    steps = [text for text, _ in seen if text.startswith("Compare: ")]
    # The loaded model's column first, then the copy's two columns after one load, then the failing model.
    assert steps == [
        "Compare: reading the load settings…",
        "Compare: running column 2 (1 of 4)…",
        "Compare: loading SmolLM2-copy.gguf for column 1…",
        "Compare: running column 1 (2 of 4)…",
        "Compare: running column 4 (3 of 4)…",
        "Compare: loading gone.gguf for column 3…",
    ]
    loading_view = next(stats for text, stats in seen if text.startswith("Compare: loading SmolLM2"))
    assert loading_view[0] == "Loading SmolLM2-copy.gguf…"

    assert c1.state == c2.state == c4.state == "done"
    assert c1.text.toPlainText() == c2.text.toPlainText()  # same weights, greedy: the copy really ran
    assert "SmolLM2-copy.gguf · Deterministic" in c1.stats.text()
    assert f"{bundled_ref.name} · Deterministic" in c2.stats.text()
    assert "SmolLM2-copy.gguf · Creative" in c4.stats.text()
    assert c3.state == "error" and c3.result is None and c3.error.startswith("Could not load gone.gguf")
    assert c3.stats.text() == c3.error
    assert seen[-1][0].endswith(f"Loading {bundled_ref.name} back…")
    assert meter.max_gap < 0.5, f"the window froze for {meter.max_gap * 1000:.0f} ms"

    assert [ref.id for ref in restored] == [bundled_ref.id]

    # Run again before the window acted on restore_model: the view knows the engine holds no model now
    # (the last load failed), so "Loaded model" columns load the original themselves first.
    view.columns[3].remove_button.click()
    view.columns[2].remove_button.click()
    choose(c1, model="Loaded model")
    limit["value"] = 8
    seen.clear()
    with qtbot.waitSignal(view.finished, timeout=60_000):
        view.run_all()
    assert [text for text, _ in seen][:3] == ["Compare: reading the load settings…",
                                               f"Compare: loading {bundled_ref.name} for column 1…",
                                               "Compare: running column 1 (1 of 2)…"]
    assert c1.state == c2.state == "done" and c1.text.toPlainText() == c2.text.toPlainText()
    assert len(restored) == 1 and win.engine.client.info()["model"]["id"] == bundled_ref.id

    # The window loads the original back (the page wires restore_model to load_model like this).
    with qtbot.waitSignal(win.engine.loaded, timeout=30_000):
        win.load_model(restored[0])
    assert win.engine.loaded_info["model"]["id"] == bundled_ref.id
    assert win.engine.client.info()["model"]["id"] == bundled_ref.id


def test_columns_between_two_and_four_and_a_prompt_error_is_shown(qtbot):
    # No model needed: nothing here reaches the engine, so its process is never started.
    engine = QtEngine(EngineClient())
    background = Background()

    def no_prompt() -> dict:
        raise InvalidRequest("The prompt is empty.", "Type a prompt first.")

    view = CompareView(engine, background, no_prompt, SamplingParams)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.columns[0].settings_combo.count() == 1 + len(BUILTIN_PRESETS), timeout=10_000)
    assert len(view.columns) == 3
    # The starting columns differ, so a first look shows the idea.
    assert [c.settings_combo.currentText() for c in view.columns] == ["Current settings", "Deterministic", "Creative"]

    assert view.add_column() is not None and len(view.columns) == 4
    assert view.add_column() is None and not view.add_button.isEnabled()
    view.columns[3].remove_button.click()
    view.columns[2].remove_button.click()
    assert len(view.columns) == 2 and view.add_button.isEnabled()
    assert not any(c.remove_button.isEnabled() for c in view.columns)
    assert [c.title.text() for c in view.columns] == ["Column 1", "Column 2"]

    with qtbot.assertNotEmitted(view.finished):
        view.run_all()
    assert view.notice.text() == "The prompt is empty. Type a prompt first." and not view.running
    assert engine.client.pid is None
    background.drain()
    background.shutdown()
