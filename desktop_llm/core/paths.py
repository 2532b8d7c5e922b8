"""Where the app keeps its data: one home folder, overridable for tests and portable installs.

Precedence for the data folder: ``$DESKTOP_LLM_HOME``, then the ``data_folder`` saved in
settings.json, then the platform's user data dir. The settings file itself cannot live in the
data folder (the data folder is one of the settings), so it has its own ``config_dir()``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HOME_ENV = "DESKTOP_LLM_HOME"
CONFIG_ENV = "DESKTOP_LLM_CONFIG"
SETTINGS_FILE = "settings.json"


def default_data_dir() -> Path:
    """The platform's user data dir for the app (not created here)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("desktop_llm", appauthor=False))


def config_dir() -> Path:
    """Where settings.json lives: ``$DESKTOP_LLM_CONFIG``, else ``$DESKTOP_LLM_HOME``, else the platform's.

    With ``$DESKTOP_LLM_HOME`` set (tests, portable installs) everything stays in that one folder.
    Not created here; ``save_settings`` creates it when it first writes.
    """
    override = os.environ.get(CONFIG_ENV) or os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("desktop_llm", appauthor=False))


# settings.json -> its data_folder as first read. The data folder is fixed for the life of the
# process, so a change in Settings takes effect after a restart (as the Settings page says),
# never halfway through a run with chats in one folder and imports in another.
_saved_folders: dict[Path, Path | None] = {}


def saved_data_folder() -> Path | None:
    """The ``data_folder`` saved in settings.json (as first read by this process), if an absolute path.

    Read here with a tiny parser rather than through ``core.settings`` so that paths stays
    import-light and free of cycles; ``load_settings_reporting`` tells the user about bad values.
    """
    file = config_dir() / SETTINGS_FILE
    if file not in _saved_folders:
        _saved_folders[file] = _read_data_folder(file)
    return _saved_folders[file]


def _read_data_folder(file: Path) -> Path | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    folder = data.get("data_folder") if isinstance(data, dict) else None
    if not isinstance(folder, str) or not folder.strip():
        return None
    path = Path(folder).expanduser()
    return path if path.is_absolute() else None


def app_home() -> Path:
    """The app's data folder: ``$DESKTOP_LLM_HOME``, else the saved data folder, else the platform's.

    A saved folder that cannot be created (an unplugged drive, no permission) falls back to the
    platform default so the app still starts; ``data_folder_problem()`` says why.
    """
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        saved = saved_data_folder()
        path = saved if saved is not None and _can_create(saved) else default_data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_folder_problem() -> str | None:
    """A user-facing message when the saved data folder is unusable and the default is used instead."""
    if os.environ.get(HOME_ENV):
        return None
    saved = saved_data_folder()
    if saved is None or _can_create(saved):
        return None
    return (f"The data folder {saved} cannot be used (missing drive or no permission). "
            f"Using the default folder {default_data_dir()} for now; choose another folder in Settings.")


def _can_create(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK)


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
