"""Dataset records to token ids and labels, with the loss on the assistant's replies only.

A chat record is rendered with the base model's own chat template (the app's sandboxed renderer,
so training sees exactly the text the model sees in a chat). The assistant replies are found by
rendering prefixes of the conversation: the text between "everything before turn i, plus the
generation prompt" and "everything up to turn i" is what the model writes for turn i, including
its end-of-turn token. Character spans become token labels through the tokenizer's offsets.

Runs in the training process (uses the transformers tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from desktop_llm.core.chat_template import render_chat
from desktop_llm.core.datasets import DatasetProblem, FieldMapping, LoadedDataset, Record, apply_length_limit
from desktop_llm.core.errors import TemplateError

IGNORE = -100  # the label of a token the loss leaves out (PyTorch cross-entropy's ignore_index)


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # aligned with input_ids (labels[i] is token i, or IGNORE); the trainer shifts
    line: int  # the record's line in the dataset file

    @property
    def trained_tokens(self) -> int:
        # Token 0 is never predicted (nothing comes before it).
        return sum(1 for label in self.labels[1:] if label != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


def special_tokens_of(tokenizer: Any) -> dict[str, str]:
    """The variables transformers passes to chat templates (bos_token, eos_token …)."""
    return {k: str(v) for k, v in tokenizer.special_tokens_map.items() if v is not None and not isinstance(v, list)}


def chat_template_of(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template or None


def _problem(line: int, kind: str, detail: str) -> DatasetProblem:
    return DatasetProblem(line, kind, f"Line {line}: {detail}.", True)


def assistant_spans(messages: Sequence[Mapping[str, str]], template: str | None,
                    special_tokens: Mapping[str, str]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant reply (with its end-of-turn).

    Whitespace the template writes after the end-of-turn (a newline before the next turn) is not part
    of the span: the model stops at the end-of-turn token and never writes it.
    """

    def render(msgs: Sequence[Mapping[str, str]], generation_prompt: bool) -> str:
        return render_chat(template, msgs, add_generation_prompt=generation_prompt, special_tokens=special_tokens)

    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    eos = special_tokens.get("eos_token", "")
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:i], True)
        upto = render(messages[: i + 1], False)
        if upto.startswith(before) and full.startswith(upto) and len(before) >= cursor:
            start, end = len(before), len(upto.rstrip())
        else:
            # A template that renders earlier turns differently once later turns exist (some drop
            # reasoning from past replies): find the reply's own text instead.
            content = message["content"]
            start = full.find(content, cursor)
            if start < 0:
                stripped = content.strip()
                start = full.find(stripped, cursor) if stripped else -1
                content = stripped
            if start < 0:
                raise TemplateError("The chat template changes the assistant's reply text, so the reply "
                                    "cannot be found in the rendered conversation.")
            end = start + len(content)
            if eos and full.startswith(eos, end):
                end += len(eos)
        if end > start:
            spans.append((start, end))
        cursor = max(cursor, end)
    return full, spans


def _labels_from_offsets(ids: list[int], offsets: Sequence[tuple[int, int]],
                         spans: list[tuple[int, int]]) -> list[int]:
    labels = [IGNORE] * len(ids)
    k = 0
    for j, (start, end) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        if k == len(spans):
            break
        lo, hi = spans[k]
        # A token is trained if any of its characters is reply text (a token that straddles the
        # reply's start still has to be predicted to write the reply).
        if end > lo and start < hi:
            labels[j] = ids[j]
    return labels


def _chat_example(record: Record, tokenizer: Any, template: str | None, special: Mapping[str, str],
                  train_on: str) -> TokenizedExample:
    assert record.messages is not None
    messages = [dict(m) for m in record.messages]
    full, spans = assistant_spans(messages, template, special)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = _labels_from_offsets(ids, enc["offset_mapping"], spans) if train_on == "assistant" else list(ids)
    else:
        # No offsets from a slow tokenizer: tokenize the pieces between span edges separately.
        cuts = sorted({0, len(full), *(edge for span in spans for edge in span)})
        ids, labels = [], []
        for a, b in zip(cuts, cuts[1:], strict=False):
            piece = tokenizer(full[a:b], add_special_tokens=False)["input_ids"]
            trained = train_on == "all" or any(lo <= a and b <= hi for lo, hi in spans)
            ids += piece
            labels += piece if trained else [IGNORE] * len(piece)
    return TokenizedExample(ids, labels, record.line)


def _text_example(record: Record, tokenizer: Any) -> TokenizedExample:
    assert record.text is not None
    ids = list(tokenizer(record.text, add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    # The end-of-text token teaches the model where a document stops.
    if isinstance(eos, int) and (not ids or ids[-1] != eos):
        ids.append(eos)
    return TokenizedExample(ids, list(ids), record.line)


def tokenize_records(records: LoadedDataset | Sequence[Record], tokenizer: Any, chat_template: str | None,
                     max_length: int, policy: str, *,
                     train_on: str = "assistant") -> tuple[list[TokenizedExample], list[DatasetProblem]]:
    """Token ids and labels for each usable record, and the problems found on the way.

    Records longer than ``max_length`` tokens are reported through ``core.datasets.apply_length_limit``
    and dropped or cut (``policy``); a record whose cut leaves no reply to learn from is dropped too.
    Pass the ``LoadedDataset`` itself to have the problems merged with the file's own.
    """
    data = records if isinstance(records, LoadedDataset) else LoadedDataset(
        Path(""), "jsonl", FieldMapping("messages", {}), list(records), [], len(records))
    special = special_tokens_of(tokenizer)
    made: dict[int, TokenizedExample] = {}
    problems: list[DatasetProblem] = []
    ok: list[Record] = []
    for record in data.records:
        try:
            example = (_text_example(record, tokenizer) if record.messages is None
                       else _chat_example(record, tokenizer, chat_template, special, train_on))
        except TemplateError as exc:
            problems.append(_problem(record.line, "template_error", f"{exc.message.rstrip('.')}; left out"))
            continue
        if example.trained_tokens == 0:
            problems.append(_problem(record.line, "nothing_to_learn", "the record has no reply to learn from "
                                     "after rendering; left out"))
            continue
        made[id(record)] = example
        ok.append(record)
    # The length limit works on the dataset (it reports in the file's terms); keep what it keeps.
    trimmed = apply_length_limit(replace(data, records=ok), [len(made[id(r)]) for r in ok], max_length, policy)
    known = set(data.problems)
    problems.extend(p for p in trimmed.problems if p not in known)
    examples: list[TokenizedExample] = []
    for record in trimmed.records:
        example = made[id(record)]
        if len(example) > max_length:
            example = TokenizedExample(example.input_ids[:max_length], example.labels[:max_length], example.line)
            if example.trained_tokens == 0:
                problems.append(_problem(record.line, "nothing_to_learn",
                                         f"cut to {max_length:,} tokens, nothing of the reply is left; left out"))
                continue
        examples.append(example)
    problems.sort(key=lambda p: p.line)
    return examples, problems
