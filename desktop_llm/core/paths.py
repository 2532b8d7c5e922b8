"""Where the app keeps its data: one home folder, overridable for tests and portable installs."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DESKTOP_LLM_HOME"


def app_home() -> Path:
    """The app's data folder: ``$DESKTOP_LLM_HOME`` if set, else the platform's user data dir."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("desktop_llm", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Derived files that can be rebuilt (e.g. safetensors copies of GGUF models)."""
    path = app_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = app_home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def hf_hub_cache() -> Path:
    """The standard Hugging Face hub cache, honouring the same variables huggingface_hub reads."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"
