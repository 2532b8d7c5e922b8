"""Shared test set-up: a private app home and HF cache, offline, headless Qt; the bundled model."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

_session_base: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Set before anything reads them; engine processes started by tests inherit them.
    global _session_base
    base = _session_base = Path(tempfile.mkdtemp(prefix="desktop_llm_tests_"))
    os.environ["DESKTOP_LLM_HOME"] = str(base / "home")
    os.environ["HF_HUB_CACHE"] = str(base / "hf-cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ["PYTHON_KEYRING_BACKEND"] = "tests.memory_keyring.MemoryKeyring"


def pytest_unconfigure(config: pytest.Config) -> None:
    # The session's home holds the models and exports the tests make (~2 GB): a run leaves none of
    # it behind (hundreds of runs had filled this machine's disk).
    if _session_base is not None:
        shutil.rmtree(_session_base, ignore_errors=True)


@pytest.fixture(scope="session")
def bundled_ref():
    from desktop_llm.core.models import resolve_model

    return resolve_model(None)


@pytest.fixture(scope="session")
def engine(bundled_ref):
    """One engine process with the bundled model, shared by tests that do not break it."""
    from desktop_llm.engine.client import EngineClient

    client = EngineClient()
    client.load(bundled_ref)
    yield client
    client.shutdown()


@pytest.fixture()
def own_engine(bundled_ref):
    """A private engine for tests that kill or break it."""
    from desktop_llm.engine.client import EngineClient

    client = EngineClient(cancel_grace=3.0)
    client.load(bundled_ref)
    yield client
    client.shutdown()


# -- GGUF editing: build test models with other metadata from the bundled one ---------------------
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, vtype: int, pos: int) -> int:
    if vtype in _SCALAR_SIZES:
        return pos + _SCALAR_SIZES[vtype]
    if vtype == 8:
        (n,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + n
    if vtype == 9:
        item_type, count = struct.unpack_from("<IQ", data, pos)
        pos += 12
        if item_type in _SCALAR_SIZES:
            return pos + _SCALAR_SIZES[item_type] * count
        for _ in range(count):
            pos = _skip_value(data, item_type, pos)
        return pos
    raise ValueError(f"unknown GGUF value type {vtype}")


def rewrite_gguf_strings(src: Path, dst: Path, updates: dict[str, str]) -> Path:
    """Copy a GGUF file with some string metadata values replaced (tensor data untouched)."""
    data = src.read_bytes()
    _magic, _version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    out = bytearray(data[:24])
    pos, alignment = 24, 32
    for _ in range(n_kv):
        start = pos
        (klen,) = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8: pos + 8 + klen].decode()
        pos += 8 + klen
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos += 4
        value_at = pos
        pos = _skip_value(data, vtype, pos)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, value_at)
        if key in updates and vtype == 8:
            new = updates[key].encode()
            out += data[start:value_at] + struct.pack("<Q", len(new)) + new
        else:
            out += data[start:pos]
    infos_at = pos
    for _ in range(n_tensors):
        (nlen,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + nlen
        (ndims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * ndims + 4 + 8
    out += data[infos_at:pos]
    data_at = pos + (-pos % alignment)
    out += b"\0" * (-len(out) % alignment)
    dst.write_bytes(bytes(out) + data[data_at:])
    return dst


@pytest.fixture(scope="session")
def gguf_with_template(bundled_ref, tmp_path_factory):
    """Factory: the bundled model with another chat template in its GGUF metadata."""
    folder = tmp_path_factory.mktemp("gguf-templates")
    made: dict[str, Path] = {}

    def make(template: str) -> Path:
        if template not in made:
            made[template] = rewrite_gguf_strings(Path(bundled_ref.path), folder / f"t{len(made)}.gguf",
                                                  {"tokenizer.chat_template": template})
        return made[template]

    return make


# The Hub look-alike's fixtures, for the hub, CLI and GUI tests alike.
from tests.hub.hub_fixtures import fake_hub, populated_hub  # noqa: E402, F401
