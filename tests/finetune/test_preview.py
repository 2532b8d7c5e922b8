"""The preview process: the dataset as the base model's tokenizer sees it, with the trained tokens marked."""

from __future__ import annotations

import json
from pathlib import Path

from desktop_llm.finetune.client import preview_process
from desktop_llm.finetune.config import TrainConfig
from desktop_llm.finetune.estimate import ModelShape, estimate_run

REPLY = "The capital of Zorblax is Quentaro."


def draft(tmp_path: Path, bundled_ref, lines: list[str], **changes) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "draft"
    folder.mkdir()
    config = TrainConfig(base_model=bundled_ref.id, dataset=str(data), **changes)
    (folder / "config.json").write_text(config.to_json())
    return folder


def chat(question: str, answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})


def test_preview_marks_only_the_reply_and_reports_bad_lines(bundled_ref, tmp_path):
    lines = [chat("What is the capital of Zorblax?", REPLY), '{"messages": [', chat("Hi", "Hello there! " * 30)]
    proc = preview_process(draft(tmp_path, bundled_ref, lines)).start()
    events = list(proc.events(timeout=240))
    proc.wait(timeout=30)
    assert events[-1]["event"] == "done", events[-1]
    dataset = next(e for e in events if e["event"] == "dataset")
    assert [(p["line"], p["kind"]) for p in dataset["problems"]] == [(2, "malformed_json")]
    preview = next(e for e in events if e["event"] == "preview")
    assert preview["lines"] == [1, 3] and preview["lengths"][1] > preview["lengths"][0]

    first = preview["records"][0]
    text = first["text"]
    trained = "".join(text[a:b] for a, b, t in first["tokens"] if t)
    untrained = "".join(text[a:b] for a, b, t in first["tokens"] if not t)
    # The reply and its end-of-turn token train; the question and the template around it do not.
    assert trained.startswith(REPLY) and trained.endswith("<|im_end|>") and len(trained) < len(REPLY) + 15
    assert "What is the capital of Zorblax?" in untrained and "<|im_start|>assistant" in untrained
    assert first["trained_tokens"] == preview["trained"][0]
    # Tokens cover the text in order: the page can draw their boundaries.
    assert [a for a, _b, _t in first["tokens"]] == sorted(a for a, _b, _t in first["tokens"])

    shape = ModelShape.from_config(preview["model_config"], preview["parameters"])
    assert 100e6 < shape.parameters < 200e6 and shape.layers == 30
    config = TrainConfig(base_model=bundled_ref.id, dataset="x", max_length=64)
    estimate = estimate_run(config, preview["lengths"], shape, device=preview["device"],
                            threads=preview["threads"], weight_bytes=preview["weight_bytes"])
    assert estimate.examples == 1, "the long record is over the 64-token limit and dropped"
    truncated = estimate_run(config.with_updates(length_policy="truncate"), preview["lengths"], shape)
    assert truncated.examples == 2 and truncated.seconds > 0 and truncated.memory_bytes > shape.parameters * 4
