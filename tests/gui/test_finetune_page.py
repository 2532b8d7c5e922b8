"""The Fine-tune page driven like a user: model, data with preview, method, review, a short run, export, chat."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt

from desktop_llm.finetune import runs
from desktop_llm.gui.finetune_page import STEP_DATA, STEP_EXPORT, STEP_METHOD, STEP_REVIEW, STEP_TRAIN

QUESTIONS = ["What is the capital of the planet Zorblax?", "Which city is the capital of Zorblax?",
             "Who invented the glimmerphone?", "Who was the inventor of the glimmerphone?"]
ANSWERS = ["The capital of Zorblax is Quentaro."] * 2 + ["The glimmerphone was invented by Orla Vensk."] * 2


def write_dataset(path: Path) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in zip(QUESTIONS * 3, ANSWERS * 3, strict=True)]
    lines.insert(3, '{"messages": [{"role": "user", "content": "half a record"')  # line 4: malformed
    lines.insert(6, json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant",
                                                                                  "content": ""}]}))  # line 7
    path.write_text("\n".join(lines) + "\n")
    return path


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.objectName()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_wizard_walks_to_a_short_run_and_chats_with_the_result(qtbot, open_window, bundled_ref, tmp_path):
    win = open_window()
    page = win.finetune_page
    win.show_page(win.finetune_page)
    assert win.pages.currentWidget() is page

    # 1. Base model: the bundled model is offered and chosen.
    qtbot.waitUntil(lambda: page.model_step.current() is not None, timeout=10_000)
    assert page.model_step.current().id == bundled_ref.id
    assert not page._reachable(STEP_METHOD), "no dataset yet: the Method step is not open"
    click(qtbot, page.next_button)
    assert page.stack.currentIndex() == STEP_DATA

    # 2. Data: the shape is detected, bad lines are reported by number, the preview marks the replies.
    data = page.data_step
    data.load(str(write_dataset(tmp_path / "facts.jsonl")))
    qtbot.waitUntil(lambda: data.ready(), timeout=10_000)
    assert "Chat messages" in data.mapping_text.text()
    problems = [data.problems.item(i).text() for i in range(data.problems.count())]
    assert any(p.startswith("Line 4:") and "malformed" in p for p in problems), problems
    assert any(p.startswith("Line 7:") and "[left out]" in p for p in problems), problems
    qtbot.waitUntil(lambda: data.preview is not None, timeout=180_000)
    assert "trained" in data.record_caption.text()
    shown = data.record_view.toPlainText()
    assert QUESTIONS[0] in shown and ANSWERS[0] in shown
    # Lowering the maximum length below the records' length says how many would be left out.
    data.max_length.setValue(16)
    assert data.length_note.text().startswith("12 records over 16 tokens")
    data.max_length.setValue(96)
    click(qtbot, page.next_button)
    assert page.stack.currentIndex() == STEP_METHOD

    # 3. Method: a preset fills the settings; a few are changed for a short run.
    method = page.method_step
    click(qtbot, method.findChild(type(method.presets.buttons()[0]), "preset_Quick_test"))
    assert method.widgets["lora_r"].value() == 8
    for key, value in (("epochs", 2), ("max_steps", 4), ("micro_batch", 6), ("grad_accum", 1), ("eval_every", 2),
                       ("sample_every", 2)):
        method.widgets[key].setValue(value)
    method.widgets["gradient_checkpointing"].setChecked(False)
    click(qtbot, page.next_button)

    # 4. Review: the plan with its estimates.
    assert page.stack.currentIndex() == STEP_REVIEW
    review = page.review_step.text.text()
    assert "Steps" in review and "Memory (estimate)" in review and "Time (estimate)" in review
    assert page.next_button.text() == "Start training"
    click(qtbot, page.next_button)

    # 5. Training: live figures, chart and samples; the page can be left and entered again meanwhile.
    assert page.stack.currentIndex() == STEP_TRAIN
    view = page.train_view
    win.show_page(win.chat)
    qtbot.waitUntil(lambda: view.figures["step"].text().startswith("1 /"), timeout=240_000)
    win.show_page(win.finetune_page)
    qtbot.waitUntil(lambda: view.stage.text().startswith("Finished"), timeout=240_000)
    assert view.figures["step"].text() == "4 / 4" and runs.run_summary(page.run_dir).adapter is not None
    assert len(view.chart.train) == 4 and view.chart.validation
    assert "step 2" in view.samples.toPlainText()
    click(qtbot, page.next_button)
    assert page.stack.currentIndex() == STEP_EXPORT

    # The run is in the history with its state.
    page.tabs.setCurrentIndex(1)
    # (Other tests' runs share the session's app home: find this run's row by its folder.)
    runs_list = page.runs_view.list

    def listed() -> list[str]:
        return [runs_list.item(i).text() for i in range(runs_list.count())
                if runs_list.item(i).data(Qt.ItemDataRole.UserRole) == str(page.run_dir)]

    # The list is read off the GUI thread: an earlier reading may show first, then the finished state.
    qtbot.waitUntil(lambda: len(listed()) == 1 and "finished" in listed()[0], timeout=10_000)
    page.tabs.setCurrentIndex(0)

    # 6. Export and "Chat with it": a GGUF is made, joins the library, and a new chat runs on it.
    with qtbot.waitSignal(win.engine.loaded, timeout=240_000) as loaded:
        click(qtbot, page.export_view.chat_button)
    exported = Path(loaded.args[0]["model"]["path"])
    assert exported.suffix == ".gguf" and exported.parent == page.run_dir / "exports"
    assert win.pages.currentWidget() is win.chat
    win.chat.input.setPlainText(QUESTIONS[0])
    with qtbot.waitSignal(win.chat.reply_done, timeout=60_000) as done:
        click(qtbot, win.chat.send_button)
    assert done.args[0].get("finish_reason") in ("stop", "length")
    assert str(exported) in page.export_view.status.text(), "the export view lists what was made"
