"""Where a run's exports go and which exist (app side: no torch here).

``RUN_DIR/exports/`` holds ``<run id>-merged/`` (safetensors folder) and ``<run id>-F16.gguf`` /
``<run id>-Q8_0.gguf``; the files are written by ``python -m desktop_llm.finetune.export``.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("merged", "gguf-f16", "gguf-q8_0")
FORMAT_TITLES = {"merged": "Merged model (safetensors)", "gguf-f16": "GGUF F16", "gguf-q8_0": "GGUF Q8_0"}
GGUF_TYPES = {"gguf-f16": "F16", "gguf-q8_0": "Q8_0"}
EXPORTS_DIR = "exports"
LOG_FILE = "export.log"
# "Chat with it" opens the first of these that exists: llama.cpp runs GGUF fastest, Q8_0 the smallest.
CHAT_ORDER = ("gguf-q8_0", "gguf-f16", "merged")


def model_name(run_dir: Path) -> str:
    return Path(run_dir).name


def export_path(run_dir: Path, fmt: str) -> Path:
    folder = Path(run_dir) / EXPORTS_DIR
    if fmt == "merged":
        return folder / f"{model_name(run_dir)}-merged"
    return folder / f"{model_name(run_dir)}-{GGUF_TYPES[fmt]}.gguf"


def is_complete(path: Path) -> bool:
    """A finished export: the writers rename into place only when done, so existing means complete."""
    if path.suffix == ".gguf":
        return path.is_file()
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def existing_exports(run_dir: Path) -> dict[str, Path]:
    """format → path of each export the run has."""
    found = {fmt: export_path(run_dir, fmt) for fmt in FORMATS}
    return {fmt: path for fmt, path in found.items() if is_complete(path)}


def chat_export(run_dir: Path) -> Path | None:
    """The export "Chat with it" opens, if one exists."""
    have = existing_exports(run_dir)
    return next((have[f] for f in CHAT_ORDER if f in have), None)
