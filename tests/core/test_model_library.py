"""The local model library: facts from headers, errors that name the problem, delete/forget, per-model defaults.

Everything is built from real files: the bundled model, tiny GGUFs written with the ``gguf`` package,
safetensors written with the ``safetensors`` package, and an HF cache laid out by hand (blobs named by
their SHA-256, relative links in snapshots, refs/main) the way huggingface_hub writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.model_library import (
    CannotDelete,
    ModelDefaults,
    delete_model,
    disk_usage,
    effective_load_options,
    forget_model,
    load_model_defaults,
    model_defaults_path,
    reveal_target,
    save_model_defaults,
)
from desktop_llm.core.models import (
    BUNDLED_ID,
    ModelRef,
    import_model,
    imported_paths,
    list_local_models,
    ref_for_path,
)
from desktop_llm.core.settings import Settings


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """A fresh app home, config and HF cache per test (paths reads the variables at each call)."""
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DESKTOP_LLM_CONFIG", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def by_id() -> dict[str, ModelRef]:
    return {m.id: m for m in list_local_models()}


def tiny_gguf(path: Path, shapes=((4, 8), (8,)), *, dtype=np.float32, file_type: int | None = None,
              template: str | None = None, ctx: int = 2048, fill: float = 1.0) -> Path:
    """A small but real GGUF (header, metadata, aligned tensor data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(ctx)
    if file_type is not None:
        writer.add_file_type(file_type)
    if template is not None:
        writer.add_chat_template(template)
    for i, shape in enumerate(shapes):
        writer.add_tensor(f"blk.{i}.weight", np.full(shape, fill, dtype=dtype if len(shape) > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def hf_folder(folder: Path, *, config: dict | None = None, template: str | None = "{{ messages }}",
              tensors: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = tensors if tensors is not None else {"embed.weight": np.zeros((16, 8), np.float16),
                                                  "norm.weight": np.ones((8,), np.float16)}
    save_file(tensors, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = {"bos_token": "<s>"} | ({"chat_template": template} if template else {})
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return folder


LLAMA_CONFIG = {"model_type": "llama", "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}


def cache_repo(cache: Path, repo_id: str, revision: str, files: dict[str, Path | bytes]) -> Path:
    """Lay files out like huggingface_hub: blobs/<sha256>, snapshots/<rev>/<name> -> ../../blobs/<sha256>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


# -- Facts from headers ------------------------------------------------------------------------------
def test_bundled_model_facts():
    bundled = by_id()[BUNDLED_ID]
    assert bundled.error is None
    assert bundled.architecture == "llama" and bundled.context_length == 8192
    assert bundled.parameters == 134_515_008  # SmolLM2-135M: 134.5M weights (tied embeddings counted once)
    assert bundled.quantization == "Q4_1"
    assert bundled.has_chat_template is True
    assert bundled.size_bytes == disk_usage(bundled) == Path(bundled.path).stat().st_size
    assert bundled.repo_id is None
    assert ModelRef.from_dict({**bundled.to_dict(), "from_a_newer_app": 1}) == bundled


def test_listing_reads_headers_only_and_is_fast(tmp_path):
    for i in range(3):
        import_model(tiny_gguf(tmp_path / f"m{i}.gguf", fill=float(i)))
    import_model(hf_folder(tmp_path / "folder", config=LLAMA_CONFIG))
    started = time.perf_counter()
    first = list_local_models()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    again = list_local_models()
    warm = time.perf_counter() - started
    assert first == again and len(first) == 5
    # Measured here: ~25 ms cold (the 49k-token vocabulary of the bundled model), under 2 ms warm.
    assert cold < 1.0 and warm < 0.1, (cold, warm)


def test_gguf_quantization_names_and_template(tmp_path):
    import_model(tiny_gguf(tmp_path / "q.gguf", file_type=15, template="{{ messages }}"))
    import_model(tiny_gguf(tmp_path / "f16.gguf", dtype=np.float16))  # no general.file_type: commonest tensor type
    refs = by_id()
    q, f16 = refs[f"file:{tmp_path / 'q.gguf'}"], refs[f"file:{tmp_path / 'f16.gguf'}"]
    assert (q.quantization, q.has_chat_template, q.parameters, q.context_length) == ("Q4_K_M", True, 40, 2048)
    assert (f16.quantization, f16.has_chat_template, f16.error) == ("F16", False, None)


def test_corrupt_files_are_listed_with_the_reason_and_the_rest_stays(bundled_ref, tmp_path):
    src = Path(bundled_ref.path)
    good = import_model(tiny_gguf(tmp_path / "good.gguf"))
    with src.open("rb") as fh:
        (tmp_path / "header-cut.gguf").write_bytes(fh.read(5000))
        fh.seek(0)
        (tmp_path / "data-cut.gguf").write_bytes(fh.read(30_000_000))
    (tmp_path / "noise.gguf").write_bytes(os.urandom(4096))
    (tmp_path / "empty.gguf").write_bytes(b"")
    old = bytearray(tiny_gguf(tmp_path / "v1.gguf").read_bytes())
    old[4:8] = (1).to_bytes(4, "little")
    (tmp_path / "v1.gguf").write_bytes(bytes(old))
    for name in ("header-cut", "data-cut", "noise", "empty", "v1"):
        import_model(tmp_path / f"{name}.gguf")
    moved = import_model(tiny_gguf(tmp_path / "moved.gguf"))
    (tmp_path / "moved.gguf").unlink()

    refs = by_id()
    error = {name: refs[f"file:{tmp_path / name}.gguf"].error or "" for name in
             ("header-cut", "data-cut", "noise", "empty", "v1", "moved")}
    assert "cut short" in error["header-cut"] and "download" in error["header-cut"].lower()
    assert "cut short" in error["data-cut"] and "of the 98,362,432 bytes" in error["data-cut"]
    assert "not a GGUF model file" in error["noise"]
    assert "empty" in error["empty"]
    assert "unsupported" in error["v1"] and "version 1" in error["v1"]
    assert "gone" in error["moved"] and "Import it again" in error["moved"]
    # A whole header still tells what the interrupted download is.
    cut = refs[f"file:{tmp_path / 'data-cut.gguf'}"]
    assert cut.architecture == "llama" and cut.parameters == 134_515_008 and cut.size_bytes == 30_000_000
    assert refs[good.id].error is None and refs[BUNDLED_ID].error is None
    assert moved.id in refs


def test_split_gguf_is_one_model_and_a_missing_part_is_named(tmp_path):
    parts = [tiny_gguf(tmp_path / f"big-{i:05d}-of-00003.gguf", shapes=((4, 8),), fill=i) for i in (1, 2, 3)]
    ref = import_model(parts[1])  # any part imports the set, listed by its first part
    assert ref.path == str(parts[0]) and imported_paths() == [str(parts[0])]
    listed = [m for m in list_local_models() if m.source == "imported"]
    assert len(listed) == 1
    whole = listed[0]
    assert whole.error is None and whole.parameters == 3 * 32
    assert whole.size_bytes == sum(p.stat().st_size for p in parts) == disk_usage(whole)

    parts[1].unlink()
    broken = by_id()[whole.id]
    assert "part 2 of 3 is missing" in broken.error and "big-00002-of-00003.gguf" in broken.error
    assert broken.size_bytes == parts[0].stat().st_size + parts[2].stat().st_size
    assert broken.parameters is None and broken.architecture == "llama"

    assert delete_model(broken) == broken.size_bytes
    assert not any(p.exists() for p in parts) and imported_paths() == []


# -- Hugging Face folders -----------------------------------------------------------------------------
def test_hf_folder_facts_from_safetensors_and_configs(tmp_path):
    folder = hf_folder(tmp_path / "tiny-llama", config=LLAMA_CONFIG)
    ref = import_model(folder)
    assert ref.error is None
    assert (ref.format, ref.architecture, ref.context_length) == ("hf", "llama", 2048)
    assert ref.parameters == 16 * 8 + 8 and ref.quantization == "bfloat16" and ref.has_chat_template is True
    assert ref.size_bytes == sum(f.stat().st_size for f in folder.iterdir())

    # No dtype in config.json: the weights' own dtype. Template in its own file.
    other = hf_folder(tmp_path / "other", config={"model_type": "qwen2"}, template=None)
    assert ref_for_path(other).quantization == "float16" and ref_for_path(other).has_chat_template is False
    (other / "chat_template.jinja").write_text("{{ messages }}")
    assert ref_for_path(other).has_chat_template is True
    gptq = hf_folder(tmp_path / "gptq", config={**LLAMA_CONFIG, "quantization_config": {"quant_method": "gptq",
                                                                                         "bits": 4}})
    assert ref_for_path(gptq).quantization == "gptq 4-bit"


def test_broken_hf_folders_say_what_is_wrong(tmp_path):
    cut = hf_folder(tmp_path / "cut", config=LLAMA_CONFIG)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[:-40])
    assert "cut short" in ref_for_path(cut).error

    garbage = hf_folder(tmp_path / "garbage", config=LLAMA_CONFIG)
    (garbage / "model.safetensors").write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    assert "unreadable safetensors header" in ref_for_path(garbage).error

    sharded = hf_folder(tmp_path / "sharded", config=LLAMA_CONFIG)
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "embed.weight": "model-00001-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors"}}))
    ref = ref_for_path(sharded)
    assert "model-00002-of-00002.safetensors is missing" in ref.error and ref.parameters is None

    # A folder that lost its config.json after import is listed, saying so.
    lost = import_model(hf_folder(tmp_path / "lost", config=LLAMA_CONFIG))
    (tmp_path / "lost" / "config.json").unlink()
    assert "config.json is missing" in by_id()[lost.id].error


# -- The Hugging Face cache ---------------------------------------------------------------------------
def test_hf_cache_two_quants_delete_one_then_the_last(tmp_path):
    cache = tmp_path / "hub"
    q4 = tiny_gguf(tmp_path / "src" / "tiny.Q4_K_M.gguf", file_type=15, fill=1.0)
    q8 = tiny_gguf(tmp_path / "src" / "tiny.Q8_0.gguf", shapes=((8, 8), (8,)), file_type=7, fill=2.0)
    snap = cache_repo(cache, "someone/tiny-GGUF", "a" * 40,
                      {"tiny.Q4_K_M.gguf": q4, "tiny.Q8_0.gguf": q8, "README.md": b"# tiny"})
    repo = snap.parent.parent
    (repo / "blobs" / ("f" * 64 + ".incomplete")).write_bytes(b"half a file")  # another download, unfinished

    refs = by_id()
    first, second = refs["hf:someone/tiny-GGUF/tiny.Q4_K_M.gguf"], refs["hf:someone/tiny-GGUF/tiny.Q8_0.gguf"]
    assert len([m for m in refs.values() if m.source == "hf-cache"]) == 2  # the .incomplete is not a model
    assert (first.repo_id, first.quantization, first.error) == ("someone/tiny-GGUF", "Q4_K_M", None)
    assert first.size_bytes == disk_usage(first) == q4.stat().st_size
    assert reveal_target(first) == snap / "tiny.Q4_K_M.gguf"

    q4_blob = os.path.realpath(snap / "tiny.Q4_K_M.gguf")
    assert delete_model(first) == q4.stat().st_size
    assert not os.path.lexists(snap / "tiny.Q4_K_M.gguf") and not os.path.exists(q4_blob)
    after = by_id()
    assert first.id not in after and after[second.id].error is None

    (repo / "blobs" / ("f" * 64 + ".incomplete")).unlink()
    # The last model: its blob, then the whole repository folder (README, refs) go.
    freed = delete_model(second)
    assert freed == q8.stat().st_size + len(b"# tiny")
    assert not repo.exists() and not any(m.source == "hf-cache" for m in list_local_models())


def test_a_blob_shared_by_two_revisions_stays_until_the_last_link(tmp_path):
    cache = tmp_path / "hub"
    q4 = tiny_gguf(tmp_path / "src" / "tiny.Q4_0.gguf", file_type=2)
    old = cache_repo(cache, "org/tiny", "1" * 40, {"tiny.Q4_0.gguf": q4})
    new = cache_repo(cache, "org/tiny", "2" * 40, {"tiny.Q4_0.gguf": q4})
    repo = old.parent.parent
    listed = [m for m in list_local_models() if m.source == "hf-cache"]
    assert len(listed) == 2
    in_old = next(m for m in listed if m.path.startswith(str(old)))
    assert delete_model(in_old) == 0  # the other revision still links to the blob
    assert not old.exists() and (new / "tiny.Q4_0.gguf").is_file()
    assert (repo / "refs" / "main").read_text() == "2" * 40
    in_new = next(m for m in list_local_models() if m.source == "hf-cache")
    assert delete_model(in_new) == q4.stat().st_size and not repo.exists()


def test_dangling_link_and_download_in_progress(tmp_path):
    cache = tmp_path / "hub"
    gone = tiny_gguf(tmp_path / "src" / "gone.gguf")
    snap = cache_repo(cache, "org/broken", "b" * 40, {"gone.gguf": gone})
    os.unlink(os.path.realpath(snap / "gone.gguf"))
    (snap.parent.parent / "blobs" / ("e" * 64 + ".incomplete")).write_bytes(b"downloading")

    ref = by_id()["hf:org/broken/gone.gguf"]
    assert "missing from the Hugging Face cache" in ref.error and ref.size_bytes == 0
    assert delete_model(ref) == 0
    # A download is still running into this repository: its folder stays.
    assert (snap.parent.parent / "blobs").is_dir() and not os.path.lexists(snap / "gone.gguf")


def test_hf_cache_folder_model_with_split_gguf_beside_it(tmp_path):
    cache = tmp_path / "hub"
    src = hf_folder(tmp_path / "src", config=LLAMA_CONFIG)
    parts = [tiny_gguf(tmp_path / "src" / f"gguf/m-{i:05d}-of-00002.gguf", fill=i) for i in (1, 2)]
    snap = cache_repo(cache, "org/mixed", "c" * 40, {
        "config.json": src / "config.json", "model.safetensors": src / "model.safetensors",
        "tokenizer_config.json": src / "tokenizer_config.json",
        "gguf/m-00001-of-00002.gguf": parts[0], "gguf/m-00002-of-00002.gguf": parts[1]})
    refs = by_id()
    folder, split = refs["hf:org/mixed@cccccccc"], refs["hf:org/mixed/gguf/m-00001-of-00002.gguf"]
    assert (folder.format, folder.parameters, folder.has_chat_template, folder.error) == ("hf", 136, True, None)
    assert folder.size_bytes == sum((src / n).stat().st_size for n in ("config.json", "model.safetensors",
                                                                        "tokenizer_config.json"))
    assert split.parameters == 2 * 40 and split.size_bytes == sum(p.stat().st_size for p in parts)
    assert len([m for m in refs.values() if m.source == "hf-cache"]) == 2

    assert delete_model(folder) == folder.size_bytes
    assert not (snap / "config.json").exists() and (snap / "gguf" / "m-00002-of-00002.gguf").is_file()
    assert by_id()[split.id].error is None
    assert delete_model(split) == split.size_bytes and not snap.parent.parent.exists()


# -- Imported: delete and forget; the bundled model ----------------------------------------------------
def test_imported_delete_and_forget(tmp_path):
    kept = import_model(tiny_gguf(tmp_path / "kept.gguf"))
    forget_model(kept)
    assert (tmp_path / "kept.gguf").is_file() and kept.id not in by_id()

    doomed = import_model(tiny_gguf(tmp_path / "doomed.gguf"))
    size = (tmp_path / "doomed.gguf").stat().st_size
    assert delete_model(doomed) == size and not (tmp_path / "doomed.gguf").exists()
    assert doomed.id not in by_id() and imported_paths() == []

    folder = import_model(hf_folder(tmp_path / "folder", config=LLAMA_CONFIG))
    assert delete_model(folder) == folder.size_bytes and not (tmp_path / "folder").exists()

    # Only what the user imported is deleted as an import.
    stranger = ref_for_path(tiny_gguf(tmp_path / "stranger.gguf"))
    with pytest.raises(CannotDelete, match="not in the list of imported models"):
        delete_model(stranger)
    assert (tmp_path / "stranger.gguf").exists()


def test_bundled_model_cannot_be_deleted_or_forgotten(bundled_ref):
    with pytest.raises(CannotDelete, match="part of the app") as caught:
        delete_model(bundled_ref)
    assert isinstance(caught.value, InvalidRequest)
    with pytest.raises(InvalidRequest, match="not an imported model"):
        forget_model(bundled_ref)
    assert Path(bundled_ref.path).is_file()
    assert reveal_target(bundled_ref) == Path(bundled_ref.path)


# -- Per-model defaults ---------------------------------------------------------------------------------
def test_model_defaults_round_trip_and_validation():
    assert load_model_defaults("hf:org/x") == ModelDefaults()
    wanted = ModelDefaults(context_size=2048, gpu_layers=0, backend="torch", sampling_preset="Precise")
    save_model_defaults("hf:org/x", wanted)
    save_model_defaults("hf:org/y", ModelDefaults(context_size=8192))
    assert load_model_defaults("hf:org/x") == wanted
    assert load_model_defaults("hf:org/y") == ModelDefaults(context_size=8192)

    with pytest.raises(InvalidRequest, match="Context size must be between 256 and 131072"):
        save_model_defaults("hf:org/x", ModelDefaults(context_size=10))
    with pytest.raises(InvalidRequest, match="Backend must be one of"):
        save_model_defaults("hf:org/x", ModelDefaults(backend="vulkan"))
    with pytest.raises(InvalidRequest, match="GPU layers"):
        save_model_defaults("hf:org/x", ModelDefaults(gpu_layers=-5))
    assert load_model_defaults("hf:org/x") == wanted  # nothing was written

    save_model_defaults("hf:org/y", ModelDefaults())  # all "as in Settings": the entry goes
    assert "hf:org/y" not in json.loads(model_defaults_path().read_text())


def test_damaged_defaults_file_gives_defaults():
    path = model_defaults_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ this is not json")
    assert load_model_defaults("hf:org/x") == ModelDefaults()
    path.write_text(json.dumps({"hf:org/x": {"context_size": "big", "gpu_layers": 12, "backend": 7},
                                "hf:org/y": ["not", "a", "mapping"]}))
    assert load_model_defaults("hf:org/x") == ModelDefaults(gpu_layers=12)  # the bad values follow Settings
    assert load_model_defaults("hf:org/y") == ModelDefaults()
    save_model_defaults("hf:org/z", ModelDefaults(gpu_layers=4))  # saving over a damaged file works
    assert load_model_defaults("hf:org/z") == ModelDefaults(gpu_layers=4)


def test_effective_load_options_apply_the_model_defaults(bundled_ref, tmp_path):
    settings = Settings(context_size=4096, gpu_layers=-1, threads=2, device="cpu")
    folder = import_model(hf_folder(tmp_path / "folder", config=LLAMA_CONFIG))
    assert effective_load_options(settings, bundled_ref) == (
        "llamacpp", {"n_ctx": 4096, "n_threads": 2, "n_gpu_layers": -1})
    assert effective_load_options(settings, folder) == ("torch", {"n_ctx": 4096, "n_threads": 2, "device": "cpu"})

    save_model_defaults(bundled_ref.id, ModelDefaults(context_size=2048, gpu_layers=0))
    assert effective_load_options(settings, bundled_ref) == (
        "llamacpp", {"n_ctx": 2048, "n_threads": 2, "n_gpu_layers": 0})
    save_model_defaults(bundled_ref.id, ModelDefaults(backend="torch"))
    assert effective_load_options(settings, bundled_ref) == ("torch", {"n_ctx": 4096, "n_threads": 2,
                                                                       "device": "cpu"})
    # "auto" for one model picks by format even when the app setting names a backend.
    save_model_defaults(folder.id, ModelDefaults(backend="auto"))
    assert effective_load_options(Settings(backend="llamacpp"), folder)[0] == "torch"

    delete_model(folder)  # the defaults of a deleted model go with it
    assert load_model_defaults(folder.id) == ModelDefaults()
