from __future__ import annotations

import pytest

from desktop_llm.core.errors import ModelLoadError
from desktop_llm.core.gguf_header import describe_gguf, read_gguf_metadata


def test_reads_bundled_model_header(bundled_ref):
    meta = read_gguf_metadata(bundled_ref.path)
    facts = describe_gguf(meta)
    assert facts["architecture"] == "llama"
    assert facts["context_length"] == 8192
    assert meta["tokenizer.ggml.tokens"] == 49152  # the vocabulary is counted, not loaded
    assert "<|im_start|>" in meta["tokenizer.chat_template"]


def test_cut_file_says_so(bundled_ref, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(bundled_ref.path, "rb") as fh:
        cut.write_bytes(fh.read(5000))
    with pytest.raises(ModelLoadError, match="cut short"):
        read_gguf_metadata(cut)


def test_other_file_types_are_named(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(ModelLoadError, match="not a GGUF model file"):
        read_gguf_metadata(f)
    with pytest.raises(ModelLoadError, match="Cannot read"):
        read_gguf_metadata(tmp_path / "missing.gguf")
