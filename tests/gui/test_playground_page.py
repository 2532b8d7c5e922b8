"""The Playground driven like a user: presets through a file, refusals, the probability view, branching, hand-off."""

from __future__ import annotations

import json
import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from desktop_llm.core.sampling import SamplingParams

PROMPT = "The three primary colours are"
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 12, "seed": 5}


def open_playground(open_window, prompt: str = PROMPT):
    win = open_window()
    page = win.playground
    win.show_page(page)
    page.prompt.text.setPlainText(prompt)
    return win, page


def test_presets_round_trip_through_a_json_file_and_bad_values_are_refused(qtbot, open_window, tmp_path):
    win, page = open_playground(open_window)
    panel = page.params_panel
    panel.set_values({"temperature": 0.35, "top_k": 17, "min_p": 0.12, "stop": ["\n\n", "END"],
                      "logit_bias": {"42": -100.0}})
    assert panel.save_preset("Tutorial")
    assert panel.preset_combo.currentText() == "Tutorial"
    path = tmp_path / "tutorial.json"
    assert panel.export_preset("Tutorial", str(path))
    saved = json.loads(path.read_text())
    assert saved["values"]["temperature"] == 0.35 and saved["values"]["stop"] == ["\n\n", "END"]
    panel.delete_preset("Tutorial")
    assert panel.preset_combo.findText("Tutorial") == -1

    panel.apply_preset("Creative")  # other values in the form now
    assert panel.params().temperature == 1.0
    assert panel.import_presets(str(path))
    panel.apply_preset("Tutorial")
    params = panel.params()
    assert (params.temperature, params.top_k, params.min_p, params.stop, params.logit_bias) == (
        0.35, 17, 0.12, ["\n\n", "END"], {42: -100.0})

    # A file with a value outside its range is refused with a message naming it; nothing is added.
    bad = tmp_path / "hot.json"
    bad.write_text(json.dumps({"name": "Too hot", "values": {"temperature": 9}}))
    assert not panel.import_presets(str(bad))
    assert "Temperature" in panel.preset_note.text() and "0 to 5" in panel.preset_note.text()
    assert panel.preset_combo.findText("Too hot") == -1

    # A broken JSON schema is refused with where it is wrong, and Generate says so instead of running.
    panel.editors["json_schema"].setPlainText('{"type": "object",')
    assert "JSON schema is not valid JSON" in panel.error.text()
    page.generate_view.generate()
    assert "JSON schema" in page.generate_view.stats.text() and not page.generate_view.busy
    panel.editors["json_schema"].setPlainText("")
    assert panel.error.text() == ""


def test_probability_view_shows_the_engines_alternatives_and_a_click_branches(qtbot, open_window, ui):
    win, page = open_playground(open_window)
    page.params_panel.set_values(GREEDY)
    view = page.generate_view
    with qtbot.waitSignal(view.run_finished, timeout=60_000) as finished:
        qtbot.mouseClick(view.generate_button, Qt.MouseButton.LeftButton)
    assert finished.args[0]["usage"]["completion_tokens"] == 12
    assert "12 generated" in view.stats.text() and "tokens/s" in view.stats.text()
    shown = view.view.tokens
    assert len(shown) == 12 and all(len(t.alternatives) == 10 for t in shown)

    # The same request straight to the engine: the view holds exactly what it sent.
    direct = win.engine.client.generate(prompt=PROMPT, params=SamplingParams.from_dict(GREEDY), alternatives=10)
    events = list(direct.tokens())
    assert [t.token_id for t in shown] == [e["token_id"] for e in events]
    assert [[a["token_id"] for a in t.alternatives] for t in shown] == [
        [a["token_id"] for a in e["alternatives"]] for e in events]
    assert view.view.toPlainText() == PROMPT + direct.result["text"]

    # Hovering explains a token; clicking one lists its alternatives with their probabilities.
    tip = view.view.tooltip_for(2)
    assert "probability" in tip and f"id {shown[2].alternatives[1]['token_id']}" in tip
    ui.click_link(view.view, "tok:2")
    alts = view.alternatives
    assert alts.position == 2 and alts.count() == 10
    second = shown[2].alternatives[1]
    assert f"{math.exp(second['logprob']) * 100:5.1f}%" in alts.item(1).text()

    # Clicking an alternative continues from there with it: a new branch in the tree.
    with qtbot.waitSignal(view.run_finished, timeout=60_000):
        qtbot.mouseClick(alts.viewport(), Qt.MouseButton.LeftButton, pos=alts.visualItemRect(alts.item(1)).center())
    branch = view.tree.branches[view.current]
    assert branch.parent == 0 and branch.at == 2
    path = view.tree.path(view.current)
    assert [t.token_id for t in path[:2]] == [t.token_id for t in shown[:2]]
    assert path[2].token_id == second["token_id"] and path[2].forced
    assert abs(path[2].logprob - second["logprob"]) < 1e-3
    assert view.branches.topLevelItem(0).childCount() == 1
    assert view.view.toPlainText().startswith(PROMPT + "".join(t.text for t in shown[:2]) + second["text"])

    # Back to the original and forth to the branch through the tree.
    qtbot.mouseClick(view.back_button, Qt.MouseButton.LeftButton)
    assert view.current == 0 and view.view.toPlainText() == PROMPT + direct.result["text"]
    view.branches.setCurrentItem(view.branches.topLevelItem(0).child(0))
    assert view.current == branch.id

    # The branch's text goes into the prompt, to be edited and continued.
    qtbot.mouseClick(view.keep_button, Qt.MouseButton.LeftButton)
    assert page.prompt.text.toPlainText() == PROMPT + view.tree.text(branch.id)


def test_send_to_chat_and_copy_as_python(qtbot, open_window):
    win, page = open_playground(open_window)
    page.prompt.set_mode(1)
    page.prompt.set_messages([{"role": "system", "content": "Answer in one word."},
                              {"role": "user", "content": "Which colour is the sky?"}])
    page.params_panel.set_values({"temperature": 0.3, "top_k": 11})

    # The Tokens tab: the chat as the model reads it (template and special tokens), counted against the context.
    page.tabs.setCurrentWidget(page.tokenizer_view)
    qtbot.waitUntil(lambda: page.tokenizer_view.result is not None, timeout=15_000)
    expected = win.engine.client.tokenize_messages(page.prompt.messages())
    n = len(expected["tokens"])
    assert page.tokenizer_view.result["tokens"] == expected["tokens"]
    assert f"{n} tokens" in page.tokenizer_view.summary.text()
    assert f"{n / 4096 * 100:.1f}% of the 4,096-token context" in page.tokenizer_view.summary.text()
    which = expected["tokens"][expected["pieces"].index("Which")]
    assert "<|im_start|>" in page.tokenizer_view.view.toPlainText()
    assert f"Which{which}·colour" in page.tokenizer_view.view.toPlainText()  # each token with its id
    page.tokenizer_view.show_ids.setChecked(False)
    assert "⏎\nWhich·colour·is·the·sky?<|im_end|>" in page.tokenizer_view.view.toPlainText()

    page.copy_python()  # the clipboard holds a script that compiles and carries the settings
    snippet = QApplication.clipboard().text()
    compile(snippet, "snippet.py", "exec")
    assert "create_chat_completion" in snippet and "top_k=11" in snippet and "Which colour is the sky?" in snippet
    qtbot.mouseClick(page.chat_button, Qt.MouseButton.LeftButton)
    assert win.pages.currentWidget() is win.chat
    assert win.chat.input.toPlainText() == "Which colour is the sky?"
    assert win.chat.conv.system_prompt == "Answer in one word."
    assert win.chat.chat_params().temperature == 0.3 and win.chat.chat_params().top_k == 11
