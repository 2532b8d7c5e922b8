"""The local model library ("My Models"): disk usage, delete, forget, reveal, and per-model defaults.

Deleting follows the Hugging Face cache layout (``models--org--name/{blobs,snapshots,refs}``): a
snapshot entry is a link to a blob, and a blob is only removed when no snapshot links to it any
more, so deleting one quantization of a repository leaves the others working. Bytes freed are
counted from what was actually removed (a blob still linked elsewhere, or a hard-linked file,
frees nothing).

Per-model defaults (context size, GPU layers, backend, sampling preset) override the app's
settings for one model; ``None`` means "as in Settings". They live in one JSON file beside
settings.json.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from desktop_llm.core.atomic_file import write_json_atomic
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.models import ModelRef, imported_paths, model_files, set_imported_paths
from desktop_llm.core.paths import config_dir
from desktop_llm.core.presets import BUILTIN_PRESETS, preset_named
from desktop_llm.core.settings import Settings

DEFAULTS_FILE = "model_defaults.json"


class CannotDelete(InvalidRequest):
    """The model is not one the library may delete (the bundled model, or not a library entry)."""


# -- Disk usage, reveal --------------------------------------------------------------------------------
def disk_usage(ref: ModelRef) -> int:
    """Bytes the model occupies: links are followed (HF cache: the blobs), a file reached twice counts once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for entry in model_files(ref):
        try:
            st = entry.stat()
        except OSError:
            continue  # a dangling link takes no space
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def reveal_target(ref: ModelRef) -> Path:
    """The file or folder to show in the file manager (the nearest existing folder if it is gone)."""
    path = Path(ref.path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


# -- Delete and forget ---------------------------------------------------------------------------------
def delete_model(ref: ModelRef) -> int:
    """Delete the model's files from disk and return the bytes freed.

    HF cache: the model's snapshot entries go, and each blob they linked to unless another snapshot
    still links to it. A snapshot left with no model (only a README, say) goes with its refs, and the
    repository folder once no snapshot is left (unless a download into it is under way).
    Imported: the file (every part of a split set) or the folder is deleted and the import forgotten.
    The bundled model cannot be deleted (``CannotDelete``).
    """
    if ref.source == "bundled":
        raise CannotDelete(f"{ref.name} is part of the app, so it cannot be deleted.",
                           "It stays available as the fallback model; pick another model to use instead.")
    if ref.source == "hf-cache":
        freed = _delete_from_hf_cache(ref)
    elif ref.source == "imported":
        freed = _delete_imported(ref)
    else:
        raise CannotDelete(f"{ref.name} comes from {ref.source!r}, which the library does not manage.",
                           "Delete its files in the file manager.")
    _forget_defaults(ref.id)
    return freed


def forget_model(ref: ModelRef) -> None:
    """Remove an imported model from the library; its files stay where they are."""
    if ref.source != "imported":
        raise InvalidRequest(f"{ref.name} is not an imported model, so there is nothing to remove from the list.",
                             "Use Delete to remove its files from disk.")
    paths = imported_paths()
    kept = [p for p in paths if not _same_path(p, ref.path)]
    if kept != paths:
        set_imported_paths(kept)


def _same_path(a: str, b: str) -> bool:
    return a == b or os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def _freed_by_unlink(path: Path) -> int:
    """Remove one file or link; the bytes that frees (a link or a file with other hard links frees none)."""
    st = path.lstat()
    freed = st.st_size if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else 0
    path.unlink()
    return freed


def _freed_by_rmtree(folder: Path) -> int:
    """Remove a folder tree (links inside are removed, never followed); the bytes that frees."""
    freed = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                freed += st.st_size
    shutil.rmtree(folder)
    return freed


def _cache_layout(ref: ModelRef) -> tuple[Path, Path]:
    """(repository folder, snapshot folder) of an HF-cache model; refuses anything outside that layout."""
    path = Path(ref.path)
    for candidate in (path, *path.parents):
        if candidate.parent.name == "snapshots" and candidate.parent.parent.name.startswith("models--"):
            return candidate.parent.parent, candidate
    raise CannotDelete(f"{ref.path} is not inside a Hugging Face cache snapshot, so it was not deleted.",
                       "Refresh the model list and try again.")


def _linked_blobs(snapshots: Path) -> set[str]:
    """Real paths of every blob a snapshot of this repository still links to."""
    linked: set[str] = set()
    for root, _dirs, files in os.walk(snapshots):
        for name in files:
            entry = os.path.join(root, name)
            if os.path.islink(entry):
                linked.add(os.path.realpath(entry))
    return linked


def _delete_from_hf_cache(ref: ModelRef) -> int:
    repo_dir, snapshot = _cache_layout(ref)
    blobs_dir = os.path.realpath(repo_dir / "blobs")
    freed = 0
    targets: set[str] = set()

    def remove(entries: list[Path]) -> None:
        nonlocal freed
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry)
                if os.path.dirname(target) == blobs_dir:
                    targets.add(target)
            freed += _freed_by_unlink(entry)

    remove(model_files(ref))
    if snapshot.is_dir() and not _has_models(snapshot):
        # What is left (README, .gitattributes, tokenizer files of a GGUF repo) belongs to no model.
        remove([Path(root, name) for root, _dirs, files in os.walk(snapshot) for name in files])
    # A blob is shared by every snapshot with the same file: keep it while any link remains.
    still_linked = _linked_blobs(repo_dir / "snapshots")
    for target in sorted(targets - still_linked):
        if os.path.lexists(target):
            freed += _freed_by_unlink(Path(target))
    _remove_empty_dirs(snapshot)
    if not snapshot.exists():
        _remove_refs_to(repo_dir, snapshot.name)
    snapshots = repo_dir / "snapshots"
    left = list(snapshots.iterdir()) if snapshots.is_dir() else []
    downloading = any((repo_dir / "blobs").glob("*.incomplete"))
    if not left and not downloading:
        # Nothing of this repository is listed any more: what remains is bookkeeping and orphan blobs.
        freed += _freed_by_rmtree(repo_dir)
    return freed


def _has_models(snapshot: Path) -> bool:
    """Whether a snapshot still holds something the library lists (same rule as the listing)."""
    return any(snapshot.glob("*.safetensors")) or any(snapshot.rglob("*.gguf"))


def _remove_empty_dirs(top: Path) -> None:
    """Remove ``top`` and the folders under it that are left empty."""
    if not top.is_dir() or top.is_symlink():
        return
    for root, dirs, _files in os.walk(top, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass  # not empty, or a link
    try:
        top.rmdir()
    except OSError:
        pass


def _remove_refs_to(repo_dir: Path, revision: str) -> None:
    """Drop refs (refs/main, refs/pr/1...) that name a snapshot which no longer exists."""
    refs = repo_dir / "refs"
    if not refs.is_dir():
        return
    for root, _dirs, files in os.walk(refs):
        for name in files:
            ref_file = Path(root, name)
            try:
                if ref_file.read_text(encoding="utf-8").strip() == revision:
                    ref_file.unlink()
            except OSError:
                pass


def _delete_imported(ref: ModelRef) -> int:
    listed = [p for p in imported_paths() if _same_path(p, ref.path)]
    if not listed:
        raise CannotDelete(f"{ref.path} is not in the list of imported models, so it was not deleted.",
                           "Refresh the model list and try again.")
    path = Path(ref.path)
    if path.is_dir() and not path.is_symlink():
        # A model folder is never a home or a drive; refuse rather than trust a strange import.
        if path.resolve() in (Path.home().resolve(), Path(path.anchor)):
            raise CannotDelete(f"{path} is a home or drive folder; the app will not delete it.",
                               "Move the model files into their own folder and import that instead.")
        freed = _freed_by_rmtree(path)
    else:
        freed = sum(_freed_by_unlink(entry) for entry in model_files(ref))
    forget_model(ref)
    return freed


# -- Per-model defaults --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelDefaults:
    """Load and chat defaults for one model; ``None`` means "use the app setting"."""

    context_size: int | None = None
    gpu_layers: int | None = None
    backend: str | None = None  # "auto", "llamacpp" or "torch"
    sampling_preset: str | None = None  # a preset name, applied to new chats with this model

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def problems(self) -> list[tuple[str, str]]:
        """(field, user-facing message) for each value out of range; the same rules as Settings."""
        # Check through Settings so the ranges and messages stay the app's own.
        load_fields = ("context_size", "gpu_layers", "backend")
        given = {name: getattr(self, name) for name in load_fields if getattr(self, name) is not None}
        out = [(name, message) for name, message in Settings(**given).problems() if name in given]
        preset = self.sampling_preset
        if preset is not None and (not isinstance(preset, str) or preset_named(preset) is None):
            names = ", ".join(p.name for p in BUILTIN_PRESETS)
            out.append(("sampling_preset", f"The sampling preset must be one of {names}, not {preset!r}."))
        return out


def model_defaults_path() -> Path:
    return config_dir() / DEFAULTS_FILE


def _read_all_defaults() -> dict[str, Any]:
    """The whole file as a mapping of model id -> values; empty when missing or damaged."""
    try:
        data = json.loads(model_defaults_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_all_defaults(data: dict[str, Any]) -> None:
    path = model_defaults_path()
    write_json_atomic(path, data)


def load_model_defaults(model_id: str) -> ModelDefaults:
    """This model's saved defaults. A damaged file or a bad value gives "as in Settings" for it, never an error."""
    entry = _read_all_defaults().get(model_id)
    if not isinstance(entry, dict):
        return ModelDefaults()
    values = {f.name: entry.get(f.name) for f in fields(ModelDefaults)}
    defaults = ModelDefaults(**values)
    bad = {name for name, _message in defaults.problems()}
    return replace(defaults, **dict.fromkeys(bad)) if bad else defaults


def save_model_defaults(model_id: str, defaults: ModelDefaults) -> None:
    """Validate and save (atomically). All-``None`` defaults remove the model's entry."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidRequest("Per-model defaults need a model id.", "Pick a model in the library first.")
    found = defaults.problems()
    if found:
        raise InvalidRequest(f"Invalid default for this model: {found[0][1]}",
                             "Change the value, or leave it to follow Settings.")
    data = _read_all_defaults()
    if defaults.is_empty():
        if model_id not in data:
            return
        data.pop(model_id)
    else:
        data[model_id] = {k: v for k, v in asdict(defaults).items() if v is not None}
    _write_all_defaults(data)


def _forget_defaults(model_id: str) -> None:
    data = _read_all_defaults()
    if model_id in data:
        data.pop(model_id)
        try:
            _write_all_defaults(data)
        except OSError:
            pass  # a stale entry is harmless: it only applies if the same id comes back


def effective_load_options(settings: Settings, ref: ModelRef) -> tuple[str, dict[str, Any]]:
    """The backend and engine load options for ``ref``: Settings with this model's defaults applied.

    A per-model backend of "auto" picks by format like the app setting does (GGUF -> llama.cpp,
    folder -> PyTorch); options are only those the chosen backend accepts (``Settings.load_options``).
    """
    defaults = load_model_defaults(ref.id)
    overrides = {name: getattr(defaults, name) for name in ("backend", "context_size", "gpu_layers")
                 if getattr(defaults, name) is not None}
    merged = replace(settings, **overrides)
    backend = merged.backend_for(ref.format)
    return backend, merged.load_options(backend)
