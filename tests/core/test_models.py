from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from desktop_llm.core.errors import ModelNotFound
from desktop_llm.core.models import BUNDLED_ID, import_model, list_local_models, resolve_model


def test_bundled_model_is_listed_like_any_other():
    models = list_local_models()
    bundled = next(m for m in models if m.id == BUNDLED_ID)
    assert bundled.format == "gguf" and bundled.source == "bundled"
    assert bundled.size_bytes > 90_000_000 and bundled.architecture == "llama"
    assert resolve_model(None) == bundled == resolve_model("smollm2")


def test_hf_cache_layout_and_imports_show_up(bundled_ref, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = cache / "models--someone--tiny-gguf" / "snapshots" / "abc123def"
    snap.mkdir(parents=True)
    os.symlink(bundled_ref.path, snap / "tiny.Q4_1.gguf")
    folder_snap = cache / "models--someone--tiny-hf" / "snapshots" / "0123456789"
    folder_snap.mkdir(parents=True)
    (folder_snap / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    (folder_snap / "model.safetensors").write_bytes(b"\0" * 16)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))

    imported = tmp_path / "mine.gguf"
    shutil.copyfile(bundled_ref.path, imported)
    import_model(imported)

    by_id = {m.id: m for m in list_local_models()}
    assert by_id["hf:someone/tiny-gguf/tiny.Q4_1.gguf"].context_length == 8192
    assert by_id["hf:someone/tiny-hf@01234567"].format == "hf"
    assert by_id["hf:someone/tiny-hf@01234567"].context_length == 2048
    assert by_id[f"file:{imported}"].source == "imported"
    assert resolve_model("mine.gguf").path == str(imported)


def test_unknown_model_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotFound, match="desktop-llm models"):
        resolve_model("no-such-model-anywhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelNotFound, match="neither a .gguf file nor a model folder"):
        import_model(Path(tmp_path / "notes.txt"))
