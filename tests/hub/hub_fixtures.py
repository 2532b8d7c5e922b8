"""The Hub look-alike on 127.0.0.1 (``fake_hub``) and repos built from the bundled model; fixtures for every
test directory (registered in tests/conftest.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.hub.fake_hub import FakeHub

GGUF_REPO = "SmolOrg/SmolLM2-135M-Instruct-GGUF"
QUANTS = ("Q2_K", "Q4_K_M", "Q8_0", "F16")


def gguf_header_bytes(bundled: Path) -> bytes:
    """The bundled model's GGUF header (magic, metadata, tensor infos): a real header for fake weights."""
    data = bundled.read_bytes()[: 8 << 20]
    _magic, _version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    from tests.conftest import _skip_value

    pos = 24
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + klen
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos = _skip_value(data, vtype, pos + 4)
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + nlen
        (ndims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * ndims + 4 + 8
    return data[:pos]


def fake_gguf(header: bytes, size: int, seed: int) -> bytes:
    """``size`` bytes that start with a real GGUF header (so its metadata reads) and go on with noise."""
    body = bytes((i * 131 + seed * 7) % 251 for i in range(4096))
    out = bytearray(header)
    while len(out) < size:
        out += body
    return bytes(out[:size])


@pytest.fixture()
def fake_hub(monkeypatch) -> FakeHub:
    """A running Hub look-alike. The test session is offline for every other host (see tests/conftest.py)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture()
def populated_hub(fake_hub, bundled_ref) -> FakeHub:
    """The Hub look-alike with: a GGUF repo of several quantizations (Q4_K_M is the real bundled model,
    the others a real header over noise), a split GGUF, a transformers repo, a gated repo, and a user."""
    bundled = Path(bundled_ref.path)
    header = gguf_header_bytes(bundled)
    card = b"---\nlicense: apache-2.0\n---\n# SmolLM2 GGUF\n\nSmall and fast.\n"
    files: dict[str, bytes | Path] = {"README.md": card}
    for i, quant in enumerate(QUANTS):
        name = f"SmolLM2-135M-Instruct-{quant}.gguf"
        files[name] = bundled if quant == "Q4_K_M" else fake_gguf(header, 200_000 * (i + 1), i)
    fake_hub.add_repo(GGUF_REPO, files, downloads=5000, likes=40, tags=["text-generation"],
                      last_modified="2026-10-01T00:00:00.000Z")
    fake_hub.add_repo("SmolOrg/Big-GGUF", {
        "README.md": b"# Big\n",
        "Big-Q4_K_M-00001-of-00002.gguf": fake_gguf(header, 300_000, 11),
        "Big-Q4_K_M-00002-of-00002.gguf": fake_gguf(b"", 200_000, 12),
        "Big-Q8_0.gguf": fake_gguf(header, 900_000, 13),
    }, downloads=900, likes=5, last_modified="2026-11-01T00:00:00.000Z")
    fake_hub.add_repo("SmolOrg/tiny-transformers", {
        "README.md": b"# Tiny\n", "config.json": b'{"model_type": "llama"}',
        "model.safetensors": b"\0" * 5000,
    }, library_name="transformers", downloads=100, likes=90, last_modified="2025-05-01T00:00:00.000Z")
    fake_hub.add_repo("GatedOrg/Gated-GGUF", {
        "README.md": b"# Gated\n", "Gated-Q4_0.gguf": fake_gguf(header, 150_000, 21),
    }, gated="manual", license="llama3", downloads=10, likes=1)
    fake_hub.add_user("hf_testtokenvalue123456", "alice", gated_access=("GatedOrg/Gated-GGUF",))
    fake_hub.add_user("hf_noaccesstoken987654", "bob")
    return fake_hub
