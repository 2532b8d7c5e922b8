"""Load options common to backends, checked so that an unknown or unusable option is an error."""

from __future__ import annotations

from typing import Any

from desktop_llm.core.errors import InvalidRequest, UnsupportedParameter


def check_options(options: dict[str, Any], supported: dict[str, type | tuple[type, ...]], backend: str,
                  known_elsewhere: set[str]) -> dict[str, Any]:
    """Reject options the backend cannot honour (naming them) and values of the wrong type."""
    for name, value in options.items():
        if value is None:
            continue
        if name not in supported:
            if name in known_elsewhere:
                raise UnsupportedParameter(f"The {backend} backend cannot use the load option '{name}'.",
                                           "Remove it, or load the model with the other backend.")
            raise InvalidRequest(f"Unknown load option '{name}'.",
                                 f"Known options for {backend}: {', '.join(sorted(supported))}.")
        if isinstance(value, bool) and supported[name] is not bool:
            raise InvalidRequest(f"Load option '{name}' must be a number, not true/false.")
        if not isinstance(value, supported[name]):
            raise InvalidRequest(f"Load option '{name}' has the wrong type ({type(value).__name__}).")
    return {k: v for k, v in options.items() if v is not None}


LLAMACPP_OPTIONS: dict[str, Any] = {
    "n_ctx": int, "n_gpu_layers": int, "n_threads": int, "n_batch": int,
    "flash_attn": bool, "use_mmap": bool, "use_mlock": bool,
}
TORCH_OPTIONS: dict[str, Any] = {"n_ctx": int, "device": str, "dtype": str, "n_threads": int,
                                 "trust_remote_code": bool}
ALL_OPTIONS = set(LLAMACPP_OPTIONS) | set(TORCH_OPTIONS)
