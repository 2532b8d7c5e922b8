"""Records to tokens and labels with the bundled model's own tokenizer and chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_llm.core.datasets import Record
from desktop_llm.finetune.tokenize import IGNORE, chat_template_of, tokenize_records


@pytest.fixture(scope="module")
def tokenizer(bundled_ref):
    from transformers import AutoTokenizer

    from desktop_llm.engine.backends.torch import gguf_safetensors_copy

    return AutoTokenizer.from_pretrained(str(gguf_safetensors_copy(Path(bundled_ref.path))))


def chat(line: int, *turns: tuple[str, str]) -> Record:
    return Record(line, tuple({"role": r, "content": c} for r, c in turns), None)


def trained_runs(tokenizer, example) -> list[str]:
    """The text of each stretch of consecutive trained tokens."""
    runs: list[list[int]] = []
    previous = False
    for label in example.labels:
        trained = label != IGNORE
        if trained and not previous:
            runs.append([])
        if trained:
            runs[-1].append(label)
        previous = trained
    return [tokenizer.decode(ids) for ids in runs]


def test_only_the_reply_and_its_end_of_turn_are_trained(tokenizer):
    record = chat(1, ("system", "You answer in riddles."), ("user", "What is the capital of France?"),
                  ("assistant", "A city of light, Paris it is."))
    (example,), problems = tokenize_records([record], tokenizer, chat_template_of(tokenizer), 256, "drop")
    assert problems == []
    assert example.line == 1
    assert trained_runs(tokenizer, example) == ["A city of light, Paris it is.<|im_end|>"]
    untrained = tokenizer.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE])
    assert "riddles" in untrained and "capital of France" in untrained
    # The labels are the input ids where trained (the trainer shifts them), so the ids decode to the whole chat.
    assert all(lab in (IGNORE, t) for t, lab in zip(example.input_ids, example.labels, strict=True))


def test_every_assistant_turn_of_a_conversation_is_trained(tokenizer):
    record = chat(7, ("user", "Hi!"), ("assistant", "Hello. How can I help?"), ("user", "Count to three."),
                  ("assistant", "One, two, three."), ("user", "Thanks"), ("assistant", "You're welcome!"))
    (example,), _ = tokenize_records([record], tokenizer, chat_template_of(tokenizer), 256, "drop")
    assert trained_runs(tokenizer, example) == [
        "Hello. How can I help?<|im_end|>", "One, two, three.<|im_end|>", "You're welcome!<|im_end|>"]
    # The template's default system prompt is rendered but never trained.
    assert "SmolLM" in tokenizer.decode(example.input_ids)
    assert all("SmolLM" not in run for run in trained_runs(tokenizer, example))


def test_another_template_finds_the_replies_too(tokenizer):
    zephyr = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    record = chat(3, ("user", "Name a colour."), ("assistant", "Blue."), ("user", "Another?"), ("assistant", "Red."))
    (example,), _ = tokenize_records([record], tokenizer, zephyr, 256, "drop")
    assert trained_runs(tokenizer, example) == ["Blue.<|im_end|>", "Red.<|im_end|>"]


def test_text_records_train_on_every_token(tokenizer):
    records = [Record(2, None, "The quick brown fox jumps over the lazy dog."), Record(4, None, "Second document.")]
    examples, problems = tokenize_records(records, tokenizer, chat_template_of(tokenizer), 256, "drop")
    assert problems == [] and [e.line for e in examples] == [2, 4]
    for example, record in zip(examples, records, strict=True):
        assert example.labels == example.input_ids
        assert tokenizer.decode(example.input_ids) == record.text + tokenizer.eos_token


def test_train_on_all_trains_the_prompt_too(tokenizer):
    record = chat(1, ("user", "Ping"), ("assistant", "Pong"))
    (example,), _ = tokenize_records([record], tokenizer, chat_template_of(tokenizer), 256, "drop", train_on="all")
    assert example.labels == example.input_ids


def test_long_records_are_reported_by_line_and_dropped_or_cut(tokenizer):
    records = [chat(1, ("user", "Short question"), ("assistant", "Short answer.")),
               chat(2, ("user", "word " * 200), ("assistant", "Fine.")),
               chat(3, ("user", "Tell me a story."), ("assistant", "Once upon a time " * 40))]
    template = chat_template_of(tokenizer)

    kept, problems = tokenize_records(records, tokenizer, template, 64, "drop")
    assert [e.line for e in kept] == [1]
    assert [(p.line, p.kind, p.dropped) for p in problems] == [(2, "too_long", True), (3, "too_long", True)]
    assert problems[0].message.startswith("Line 2: ")

    kept, problems = tokenize_records(records, tokenizer, template, 64, "truncate")
    # Line 2 cut to 64 tokens keeps none of its reply, so there is nothing to learn from it.
    assert [e.line for e in kept] == [1, 3]
    assert len(kept[1]) == 64 and kept[1].trained_tokens > 0
    assert {(p.line, p.kind) for p in problems} == {(2, "too_long"), (2, "nothing_to_learn"), (3, "too_long")}
    assert all(p.dropped for p in problems if p.kind == "nothing_to_learn")
