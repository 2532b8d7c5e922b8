"""``python -m desktop_llm.finetune.preview FOLDER``: how the base model's tokenizer sees a dataset.

``FOLDER/config.json`` is a draft ``TrainConfig`` (the Fine-tune page writes it). The process loads
the dataset and the base model's tokenizer (converting a GGUF base once, as training does, so the
run starts faster later), renders every record with the model's chat template exactly as training
will, and answers with one ``preview`` event:

- ``lengths``: the token count of every usable record (before the length limit), with ``lines``;
- ``records``: the first few records as rendered text with each token's character span and
  whether it is trained (``[start, end, trained]``), so the page can mark what the model learns;
- ``shape``, ``weight_bytes``, ``device``, ``threads``: what ``finetune.estimate`` needs.

Events go to stdout as JSON lines (``stage``, ``dataset``, ``problems``, ``preview``, then ``done`` or
``error``), like the training process's. torch and transformers are imported here, never in the app.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from desktop_llm.core.datasets import Record, load_dataset  # noqa: E402
from desktop_llm.core.errors import InvalidRequest, TemplateError  # noqa: E402
from desktop_llm.core.models import ref_for_path  # noqa: E402
from desktop_llm.finetune import runs  # noqa: E402
from desktop_llm.finetune.config import TrainConfig  # noqa: E402
from desktop_llm.finetune.event_stream import EventStream, run_reporting  # noqa: E402
from desktop_llm.finetune.tokenize import (  # noqa: E402
    assistant_spans,
    chat_template_of,
    special_tokens_of,
    tokenize_records,
)

PREVIEW_RECORDS = 25
NO_LIMIT = 1 << 30


def token_marks(record: Record, tokenizer: Any, template: str | None, train_on: str) -> dict[str, Any]:
    """The record as the model reads it: rendered text and ``[start, end, trained]`` per token."""
    if record.messages is None:
        assert record.text is not None
        text, spans = record.text, [(0, len(record.text))]
    else:
        text, spans = assistant_spans([dict(m) for m in record.messages], template, special_tokens_of(tokenizer))
    if train_on == "all":
        spans = [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=record.messages is None, return_offsets_mapping=True)
    tokens = []
    for start, end in enc["offset_mapping"]:
        trained = any(end > lo and start < hi for lo, hi in spans)
        tokens.append([int(start), int(end), trained])
    return {"line": record.line, "text": text, "tokens": tokens,
            "trained_tokens": sum(1 for t in tokens[1:] if t[2])}


def model_facts(folder: Path, device_name: str) -> dict[str, Any]:
    """Shape, weight count and the device and dtype training would use."""
    import torch

    from desktop_llm.finetune.trainer import pick_device, pick_dtype

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    device = pick_device(device_name)
    return {"config": config, "parameters": ref_for_path(folder).parameters or 0, "device": device.type,
            "weight_bytes": torch.empty((), dtype=pick_dtype(device, "lora")).element_size(),
            "threads": torch.get_num_threads()}


def preview(folder: Path, out: EventStream) -> None:
    config = TrainConfig.from_file(folder / runs.CONFIG_FILE, strict=False).validate()
    out.emit("stage", stage="loading", fraction=0.0, detail="dataset")
    data = load_dataset(config.dataset, config.field_mapping())
    out.emit("dataset", records=len(data.records), total=data.total, summary=data.summary(),
             mapping=data.mapping.describe(), notes=list(data.notes),
             problems=[{"line": p.line, "kind": p.kind, "message": p.message, "dropped": p.dropped}
                       for p in data.problems])
    if not data.records:
        raise InvalidRequest(f"No record of {Path(config.dataset).name} can be used for training.",
                             " ".join(p.message for p in data.problems[:3]))

    from desktop_llm.finetune.trainer import load_base

    def stage(what: str, fraction: float) -> None:
        out.emit("stage", stage="loading", fraction=round(fraction, 3), detail=what)

    _ref, tokenizer, model_folder = load_base(config.base_model, stage)
    template = chat_template_of(tokenizer)

    out.emit("stage", stage="tokenizing", fraction=0.0)
    examples, problems = tokenize_records(data, tokenizer, template, NO_LIMIT, "drop", train_on=config.train_on)
    if problems:
        out.emit("problems", problems=[{"line": p.line, "kind": p.kind, "message": p.message, "dropped": p.dropped}
                                       for p in problems])
    usable = {e.line for e in examples}
    shown: list[dict[str, Any]] = []
    for record in data.records:
        if len(shown) >= PREVIEW_RECORDS:
            break
        if record.line in usable:
            try:
                shown.append(token_marks(record, tokenizer, template, config.train_on))
            except TemplateError:
                continue
    facts = model_facts(model_folder, config.device)
    out.emit("preview", lengths=[len(e) for e in examples], trained=[e.trained_tokens for e in examples],
             lines=[e.line for e in examples], records=shown, has_template=template is not None,
             model_config=facts["config"], parameters=facts["parameters"], device=facts["device"],
             weight_bytes=facts["weight_bytes"], threads=facts["threads"])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m desktop_llm.finetune.preview FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0]).expanduser()

    def work(out: EventStream) -> dict[str, Any]:
        preview(folder, out)
        return {}

    return run_reporting(work, "preview", f"See {folder / runs.LOG_FILE} for details.")


if __name__ == "__main__":
    sys.exit(main())
