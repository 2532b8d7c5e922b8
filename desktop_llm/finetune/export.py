"""``python -m desktop_llm.finetune.export RUN_DIR FORMAT [FORMAT ...]``: turn a finished run into models.

Formats (``finetune.exports.FORMATS``): ``merged`` (the adapter merged into its base: safetensors,
tokenizer, chat template), ``gguf-f16`` and ``gguf-q8_0`` (one GGUF file each, made from the merged
model). The LoRA adapter itself is the run's ``adapter/`` folder already. Each result is added to
the model library at once, so it is there even if the app was closed meanwhile.

Events on stdout, one JSON object a line: ``stage`` (``stage`` export, ``format``, ``fraction``),
``exported`` (``format``, ``path``, ``model_id``), then ``done`` (``exports``: format → path) or ``error``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from desktop_llm.core.errors import InvalidRequest  # noqa: E402
from desktop_llm.core.models import import_model  # noqa: E402
from desktop_llm.finetune import exports, runs  # noqa: E402
from desktop_llm.finetune.event_stream import EventStream, run_reporting  # noqa: E402


def _adapter_facts(run_dir: Path) -> tuple[Path, Path, str]:
    """(result folder, base model folder, method) of a finished run; a clear error when it has not finished."""
    for name in (runs.ADAPTER_DIR, runs.MODEL_DIR):
        folder = run_dir / name
        info_file = folder / "desktop_llm_run.json"
        if info_file.is_file():
            info = json.loads(info_file.read_text(encoding="utf-8"))
            return folder, Path(str(info.get("base_folder", ""))), str(info.get("method", "lora"))
    raise InvalidRequest(f"The run {run_dir.name} has no trained result to export yet.",
                         "Let the training finish (or resume it) first.")


def export_run(run_dir: Path, formats: Sequence[str], out: EventStream) -> dict[str, str]:
    for fmt in formats:
        if fmt not in exports.FORMATS:
            raise InvalidRequest(f"Unknown export format {fmt!r}.", f"Formats: {', '.join(exports.FORMATS)}.")
    result, base_folder, method = _adapter_facts(run_dir)
    made: dict[str, str] = {}

    def progress(fmt: str) -> Any:
        return lambda _what, fraction: out.emit("stage", stage="export", format=fmt, fraction=round(fraction, 3))

    def announce(fmt: str, path: Path) -> None:
        ref = import_model(path)
        made[fmt] = str(path)
        out.emit("exported", format=fmt, path=str(path), model_id=ref.id, name=ref.name)

    merged = exports.export_path(run_dir, "merged")
    if method == "full":
        merged = result  # a full fine-tune's result is a complete model already
    wants_gguf = any(f.startswith("gguf-") for f in formats)
    if ("merged" in formats or wants_gguf) and not exports.is_complete(merged):
        if not base_folder.is_dir():
            raise InvalidRequest(f"The base model of this run is gone from {base_folder}.",
                                 "Load the base model once in the app (it is converted again), then export.")
        from desktop_llm.finetune.merge import merge_adapter

        merge_adapter(base_folder, result, merged, progress("merged"))
    if "merged" in formats:
        announce("merged", merged)
    for fmt in formats:
        if not fmt.startswith("gguf-"):
            continue
        from desktop_llm.finetune.gguf_export import export_gguf

        target = exports.export_path(run_dir, fmt)
        export_gguf(merged, target, exports.GGUF_TYPES[fmt], progress(fmt), name=exports.model_name(run_dir))
        announce(fmt, target)
    return made


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(f"usage: python -m desktop_llm.finetune.export RUN_DIR {{{','.join(exports.FORMATS)}}} ...",
              file=sys.stderr)
        return 2
    run_dir = Path(args[0]).expanduser()
    return run_reporting(lambda out: {"exports": export_run(run_dir, args[1:], out)}, "export",
                         f"See {run_dir / exports.LOG_FILE} for details.")


if __name__ == "__main__":
    sys.exit(main())
