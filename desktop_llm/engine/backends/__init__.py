"""Inference backends. Each is imported only when a model is loaded with it, in the engine process."""

from __future__ import annotations

from typing import Any

BACKENDS = ("llamacpp", "torch")


def create_backend(name: str) -> Any:
    if name == "llamacpp":
        from desktop_llm.engine.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend()
    if name == "torch":
        from desktop_llm.engine.backends.torch import TorchBackend

        return TorchBackend()
    from desktop_llm.core.errors import InvalidRequest

    raise InvalidRequest(f"Unknown backend {name!r}.", f"Choose one of: {', '.join(BACKENDS)}.")


def pick_backend(model_format: str, requested: str | None) -> str:
    """'auto' (or nothing) means llama.cpp for GGUF files and PyTorch for model folders."""
    if requested and requested != "auto":
        return requested
    return "llamacpp" if model_format == "gguf" else "torch"
