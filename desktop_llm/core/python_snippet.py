"""Copy as Python: the Playground's run as a self-contained llama-cpp-python script.

The script names every sampling argument (so a reader sees them all), with llama-cpp-python's own
argument names. Text (prompt, messages, stop sequences, grammar, schema) is embedded as Python
literals, so quotes, line breaks and any Unicode come back exactly. Known differences from the app,
which the script mentions where they apply:

- llama-cpp-python has no per-call repeat_last_n; it is the constructor's ``last_n_tokens_size``.
- Without a seed llama-cpp-python reuses one fixed seed on every run of a script, so a "Random"
  seed becomes ``random.randrange(...)`` per run, as in the app.
- llama-cpp-python's mirostat ignores temperature; the app applies the temperature first.

No llama_cpp import here: this module only writes text (core stays free of the engine's packages).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams

DEFAULT_N_CTX = 4096  # the engine's and Settings' default context size
_WIDTH = 100  # wrap literals longer than this


def llama_cpp_snippet(model_path: str, params: SamplingParams, prompt: str | None = None,
                      messages: list[dict] | None = None, n_ctx: int | None = None) -> str:
    """A complete, runnable script doing the same run with llama-cpp-python.

    Give ``prompt`` for a raw completion (``create_completion``) or ``messages`` (dicts with "role"
    and "content"; other keys are left out) for a chat (``create_chat_completion``, with the
    model's own chat template). ``n_ctx`` None means the app's default, 4096.
    """
    if (prompt is None) == (messages is None):
        raise ValueError("give either a prompt or messages")
    params.validate()
    if Path(model_path).is_dir():
        raise InvalidRequest("Copy as Python writes a llama-cpp-python script, which needs a GGUF model file; "
                             "this model is a folder (a transformers model).",
                             "Load a GGUF model to copy the run as Python.")
    chat = messages is not None
    n_ctx = DEFAULT_N_CTX if n_ctx is None else n_ctx
    if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 0:
        raise InvalidRequest(f"The context size must be a whole number of tokens, not {n_ctx!r}.")
    grammar_from_schema = bool(params.json_schema) and not chat

    out: list[str] = [
        "# The same run as in desktop_llm, with llama-cpp-python (pip install llama-cpp-python).",
    ]
    stdlib = (["import json"] if grammar_from_schema else []) + (["import random"] if params.seed is None else [])
    if stdlib:
        out += ["", *stdlib]
    names = "Llama, LlamaGrammar" if params.grammar or grammar_from_schema else "Llama"
    out += ["", f"from llama_cpp import {names}", ""]

    out.append("llm = Llama(")
    out.append(f"    model_path={_literal(model_path, 4)},")
    out.append(f"    n_ctx={n_ctx},")
    out.append(f"    last_n_tokens_size={params.repeat_last_n},  "
               "# repeat_last_n: how many recent tokens the penalties look at")
    if params.seed is not None:
        out.append(f"    seed={params.seed},")
    out += ["    verbose=False,", ")", ""]

    if chat:
        kept = [_message(m, i) for i, m in enumerate(messages or [], 1)]
        out.append("messages = [")  # one message a line, however short
        out += [f"    {_literal(m, 4)}," for m in kept]
        out.append("]")
    else:
        out.append(f"prompt = {_literal(prompt, 0)}")
    if params.grammar:
        out.append(f"grammar = LlamaGrammar.from_string({_literal(params.grammar, 0)}, verbose=False)")
    if params.json_schema:
        out.append(f"schema = {_literal(params.json_schema, 0)}")
        if grammar_from_schema:
            out.append("grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)")
    out.append("")

    call = "create_chat_completion" if chat else "create_completion"
    out.append(f"out = llm.{call}(")
    out.append("    messages=messages," if chat else "    prompt=prompt,")
    out += [f"    {name}={_literal(value, 4)}," for name, value in _sampling_arguments(params)]
    if params.seed is None:
        out.append("    seed=random.randrange(2**32 - 1),  "
                   "# Random: without a seed llama-cpp-python repeats the same text every run")
    else:
        out.append(f"    seed={params.seed},")
    if params.mirostat_mode:
        out.append("    # note: llama-cpp-python's mirostat ignores the temperature; desktop_llm applies it first")
    if params.stop:
        out.append(f"    stop={_literal(list(params.stop), 4)},")
    if params.logit_bias:
        out.append(f"    logit_bias={_literal({int(k): float(v) for k, v in params.logit_bias.items()}, 4)},")
    if params.grammar or grammar_from_schema:
        out.append("    grammar=grammar,")
    elif params.json_schema:
        out.append("    response_format={'type': 'json_object', 'schema': schema},")
    out.append(")")
    out.append("print(out['choices'][0]['message']['content'])" if chat else "print(out['choices'][0]['text'])")
    return "\n".join(out) + "\n"


def _sampling_arguments(params: SamplingParams) -> list[tuple[str, Any]]:
    """SamplingParams -> llama-cpp-python keyword arguments (the same names, but for repeat_last_n)."""
    return [
        ("max_tokens", params.max_tokens),
        ("temperature", float(params.temperature)),
        ("top_k", params.top_k),
        ("top_p", float(params.top_p)),
        ("min_p", float(params.min_p)),
        ("typical_p", float(params.typical_p)),
        ("repeat_penalty", float(params.repeat_penalty)),
        ("presence_penalty", float(params.presence_penalty)),
        ("frequency_penalty", float(params.frequency_penalty)),
        ("mirostat_mode", params.mirostat_mode),
        ("mirostat_tau", float(params.mirostat_tau)),
        ("mirostat_eta", float(params.mirostat_eta)),
    ]


def _message(message: Any, number: int) -> dict[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
            or not isinstance(message.get("content"), str):
        raise InvalidRequest(f"Message {number} is not a chat message with a role and text content.")
    return {"role": message["role"], "content": message["content"]}


# -- Python literals, wrapped for reading ---------------------------------------------------------
def _literal(value: Any, indent: int) -> str:
    """``value`` as Python source that evaluates to it, wrapped when longer than the line allows."""
    flat = _flat(value)
    if indent + len(flat) <= _WIDTH or not isinstance(value, str | dict | list | tuple):
        return flat
    pad, end = " " * (indent + 4), " " * indent
    if isinstance(value, str):
        parts = _split_text(value)
        if len(parts) == 1:
            return flat
        return "(\n" + "".join(f"{pad}{p!r}\n" for p in parts) + end + ")"
    if isinstance(value, dict):
        items = [f"{pad}{_flat(k)}: {_literal(v, indent + 4)},\n" for k, v in value.items()]
        return "{\n" + "".join(items) + end + "}"
    items = [f"{pad}{_literal(v, indent + 4)},\n" for v in value]
    return "[\n" + "".join(items) + end + "]"


def _flat(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a Python literal")


def _split_text(text: str, width: int = 72) -> list[str]:
    """Pieces of ``text`` (lines, then long lines after a space) that concatenate back to it exactly."""
    parts: list[str] = []
    for line in text.splitlines(keepends=True):
        while len(line) > width:
            cut = line.rfind(" ", width // 2, width) + 1 or width
            parts.append(line[:cut])
            line = line[cut:]
        if line:
            parts.append(line)
    return parts or [text]
