from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import pytest

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.python_snippet import llama_cpp_snippet
from desktop_llm.core.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
CHAT = [{"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What colour is the sky?", "id": "m1"}]


def run(script: str, tmp_path) -> str:
    file = tmp_path / "snippet.py"
    file.write_text(script, encoding="utf-8")
    done = subprocess.run([sys.executable, str(file)], capture_output=True, text=True, timeout=240,
                          encoding="utf-8")
    assert done.returncode == 0, done.stderr
    return done.stdout


def assigned(script: str, name: str):
    """The value of the module-level ``name = <literal>`` in the script."""
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the script")


def keywords_by_callee(script: str) -> dict[str, list[str]]:
    calls: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(script)):
        if isinstance(node, ast.Call):
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "?"
            assert all(k.arg is not None for k in node.keywords), "no **kwargs: every argument is named"
            calls.setdefault(callee, []).extend(k.arg for k in node.keywords)
    return calls


def literal_keywords(script: str) -> dict:
    """Every keyword argument given as a literal (in any call), by name."""
    given = {}
    for node in ast.walk(ast.parse(script)):
        for k in node.keywords if isinstance(node, ast.Call) else ():
            try:
                given[k.arg] = ast.literal_eval(k.value)
            except ValueError:  # a name (prompt=prompt) or a call
                pass
    return given


def test_completion_snippet_runs_and_prints_the_text(bundled_ref, tmp_path):
    script = llama_cpp_snippet(bundled_ref.path, GREEDY, prompt="The capital of France is", n_ctx=512)
    compile(script, "snippet.py", "exec")
    assert "from llama_cpp import Llama\n" in script
    assert "llm.create_completion(" in script and "n_ctx=512," in script
    first = run(script, tmp_path)
    assert first.strip()
    # Temperature 0 is greedy: the same text on every run, as in the app.
    assert run(script, tmp_path) == first


def test_chat_snippet_runs_with_the_models_template(bundled_ref, tmp_path):
    script = llama_cpp_snippet(bundled_ref.path, GREEDY.with_updates(seed=11), messages=CHAT)
    compile(script, "snippet.py", "exec")
    assert "llm.create_chat_completion(" in script
    assert "seed=11," in script
    # Only role and content are passed on (the app's own keys are not chat-completion fields).
    assert assigned(script, "messages") == [{"role": m["role"], "content": m["content"]} for m in CHAT]
    assert run(script, tmp_path).strip()


def test_a_grammar_snippet_is_held_to_the_grammar(bundled_ref, tmp_path):
    params = SamplingParams(temperature=0.0, max_tokens=8, grammar='root ::= "yes" | "no"')
    script = llama_cpp_snippet(bundled_ref.path, params, prompt="Is water wet? Answer:")
    assert "LlamaGrammar.from_string(" in script
    assert run(script, tmp_path).strip() in ("yes", "no")


def test_prompts_with_quotes_newlines_and_unicode_round_trip(tmp_path):
    prompt = 'He said "don\'t" \\ then:\n\tcafé — 東京 🙂 """triple""" ' + "long text " * 30 + "\r\nend"
    stops = ["\n\n", 'User "A":']
    script = llama_cpp_snippet(str(tmp_path / "model's file.gguf"), SamplingParams(stop=stops), prompt=prompt)
    compile(script, "snippet.py", "exec")
    assert assigned(script, "prompt") == prompt
    llama_call = next(n for n in ast.walk(ast.parse(script))
                      if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Llama")
    model_path = next(k.value for k in llama_call.keywords if k.arg == "model_path")
    assert ast.literal_eval(model_path) == str(tmp_path / "model's file.gguf")
    assert max(len(line) for line in script.splitlines()) <= 130  # long text is wrapped for reading


def test_a_json_schema_is_a_grammar_for_completion_and_a_response_format_for_chat():
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    params = SamplingParams(json_schema=schema)
    completion = llama_cpp_snippet("m.gguf", params, prompt="x")
    assert "import json" in completion
    assert "grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)" in completion
    assert assigned(completion, "schema") == schema
    chat = llama_cpp_snippet("m.gguf", params, messages=[{"role": "user", "content": "x"}])
    assert "response_format={'type': 'json_object', 'schema': schema}" in chat
    assert "LlamaGrammar" not in chat and assigned(chat, "schema") == schema


def test_every_sampling_value_is_written_with_llama_cpp_names():
    params = SamplingParams(temperature=0.55, top_k=17, top_p=0.85, min_p=0.07, typical_p=0.9,
                            repeat_penalty=1.3, repeat_last_n=128, presence_penalty=0.4,
                            frequency_penalty=-0.2, mirostat_mode=2, mirostat_tau=4.5, mirostat_eta=0.2,
                            logit_bias={15: -100.0, 9: 3.5}, seed=1234, max_tokens=77, stop=["END"])
    script = llama_cpp_snippet("m.gguf", params, prompt="x", n_ctx=2048)
    calls = keywords_by_callee(script)
    given = literal_keywords(script)
    assert given["last_n_tokens_size"] == 128
    assert given["logit_bias"] == {15: -100.0, 9: 3.5}
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "mirostat_mode", "mirostat_tau", "mirostat_eta", "max_tokens", "stop",
                 "seed"):
        assert given[name] == getattr(params, name), name
    assert "seed" in calls["Llama"] and "seed" in calls["create_completion"]
    assert "mirostat ignores the temperature" in script


def test_a_random_seed_is_new_each_run_and_empty_extras_are_left_out():
    script = llama_cpp_snippet("m.gguf", SamplingParams(), prompt="x")
    assert "import random" in script and "seed=random.randrange(2**32 - 1)" in script
    calls = keywords_by_callee(script)
    assert "seed" not in calls["Llama"]
    for left_out in ("stop", "logit_bias", "grammar", "response_format"):
        assert left_out not in calls["create_completion"]


def test_every_keyword_exists_in_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    signatures = {
        "Llama": inspect.signature(llama_cpp.Llama.__init__),
        "create_completion": inspect.signature(llama_cpp.Llama.create_completion),
        "create_chat_completion": inspect.signature(llama_cpp.Llama.create_chat_completion),
        "from_string": inspect.signature(llama_cpp.LlamaGrammar.from_string),
        "from_json_schema": inspect.signature(llama_cpp.LlamaGrammar.from_json_schema),
    }
    full = SamplingParams(temperature=0.5, logit_bias={1: 1.0}, stop=["x"], seed=3, mirostat_mode=1)
    scripts = [
        llama_cpp_snippet("m.gguf", full, prompt="x"),
        llama_cpp_snippet("m.gguf", full, messages=[{"role": "user", "content": "x"}]),
        llama_cpp_snippet("m.gguf", full.with_updates(grammar='root ::= "a"'), prompt="x"),
        llama_cpp_snippet("m.gguf", full.with_updates(json_schema={"type": "string"}), prompt="x"),
        llama_cpp_snippet("m.gguf", full.with_updates(json_schema={"type": "string"}),
                          messages=[{"role": "user", "content": "x"}]),
    ]
    checked = set()
    for script in scripts:
        for callee, keywords in keywords_by_callee(script).items():
            if callee in signatures:
                checked.add(callee)
                unknown = set(keywords) - set(signatures[callee].parameters)
                assert not unknown, f"{callee} has no argument(s) {unknown}"
    assert checked == set(signatures)


def test_a_model_folder_or_a_missing_prompt_is_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="needs a GGUF model file"):
        llama_cpp_snippet(str(tmp_path), GREEDY, prompt="x")
    with pytest.raises(ValueError):
        llama_cpp_snippet("m.gguf", GREEDY)
    with pytest.raises(InvalidRequest, match="Message 1"):
        llama_cpp_snippet("m.gguf", GREEDY, messages=[{"role": "user"}])
