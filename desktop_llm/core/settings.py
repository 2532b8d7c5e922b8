"""The user's settings: one small JSON file in ``paths.config_dir()``, read at start, saved on change.

A bad value never stops the app: it falls back to its default, the user is told which value and
why, and the original file is kept beside it as ``settings.json.bad``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from desktop_llm.core.atomic_file import write_json_atomic
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.paths import SETTINGS_FILE, config_dir
from desktop_llm.core.sampling import SamplingParams

BACKENDS = ("auto", "llamacpp", "torch")
DEVICES = ("auto", "cpu", "cuda", "mps")
THEMES = ("system", "light", "dark")
CONTEXT_RANGE = (256, 131072)
FONT_RANGE = (7, 24)
THREADS_MAX = 1024
PARALLEL_DOWNLOADS = (1, 8)
DEFAULT_HUB = "https://huggingface.co"
# The sampling values a user sets as defaults for new chats; the rest stay per chat.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed")
_INT_SAMPLING = {"top_k", "max_tokens", "seed"}
_CUDA_INDEX = re.compile(r"cuda:\d+")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sampling_problem(key: str, value: Any) -> str | None:
    """Why one sampling override is unusable, or None."""
    if key not in SAMPLING_KEYS:
        return f"'{key}' cannot be a default for new chats (allowed: {', '.join(SAMPLING_KEYS)})"
    if key == "seed" and value is None:
        return None
    if not (_is_int(value) if key in _INT_SAMPLING else _is_number(value)):
        kind = "a whole number" if key in _INT_SAMPLING else "a number"
        return f"{key} must be {kind}, not {value!r}"
    try:
        SamplingParams().with_updates(**{key: value})
    except InvalidRequest as exc:
        return exc.message.removeprefix("Invalid sampling parameter: ").rstrip(".")
    return None


@dataclass
class Settings:
    """Everything the user can set. Engine values apply at the next model load."""

    data_folder: str | None = None  # None: the platform default (paths.app_home)
    default_model: str | None = None  # a ModelRef.id; None: the bundled model
    backend: str = "auto"  # auto | llamacpp | torch
    device: str = "auto"  # auto | cpu | cuda | mps (PyTorch only)
    threads: int | None = None  # None: automatic
    context_size: int = 4096
    gpu_layers: int = -1  # -1: all that fit; 0: CPU only (llama.cpp only)
    theme: str = "system"  # system | light | dark
    font_size: int = 10  # points
    system_prompt: str = ""  # default system prompt for new chats
    # Default SamplingParams overrides for new chats; keys from SAMPLING_KEYS only.
    sampling: dict[str, Any] = field(default_factory=dict)
    # The Hub (or a mirror); empty: $HF_ENDPOINT, else https://huggingface.co.
    hub_endpoint: str = ""
    parallel_downloads: int = 2
    # The local OpenAI-compatible server (desktop_llm.server.config.ServerConfig fields); its key is in the keyring.
    server: dict[str, Any] = field(default_factory=dict)

    def hub_url(self) -> str:
        """The Hub endpoint to use, without a trailing slash."""
        return (self.hub_endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HUB).rstrip("/")

    def problems(self) -> list[tuple[str, str]]:
        """Every (field name, user-facing message) for a value out of range; empty when all is well."""
        out: list[tuple[str, str]] = []

        def check(name: str, ok: bool, message: str) -> None:
            if not ok:
                out.append((name, message))

        folder = self.data_folder
        check("data_folder", folder is None or (isinstance(folder, str) and folder.strip() != ""
                                                and Path(folder).expanduser().is_absolute()),
              f"Data folder must be a full path (like /home/me/llm-data), not {folder!r}.")
        check("default_model", self.default_model is None
              or (isinstance(self.default_model, str) and self.default_model.strip() != ""),
              "Default model must be a model id, or empty for the bundled model.")
        check("backend", self.backend in BACKENDS,
              f"Backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}.")
        check("device", self.device in DEVICES or (isinstance(self.device, str)
                                                   and _CUDA_INDEX.fullmatch(self.device) is not None),
              f"Device must be one of {', '.join(DEVICES)} (or cuda:N), not {self.device!r}.")
        check("threads", self.threads is None or (_is_int(self.threads) and 1 <= self.threads <= THREADS_MAX),
              f"Threads must be between 1 and {THREADS_MAX}, or automatic; not {self.threads!r}.")
        lo, hi = CONTEXT_RANGE
        check("context_size", _is_int(self.context_size) and lo <= self.context_size <= hi,
              f"Context size must be between {lo} and {hi} tokens, not {self.context_size!r}.")
        check("gpu_layers", _is_int(self.gpu_layers) and self.gpu_layers >= -1,
              f"GPU layers must be -1 (all), 0 (CPU only) or a positive number; not {self.gpu_layers!r}.")
        check("theme", self.theme in THEMES, f"Theme must be one of {', '.join(THEMES)}, not {self.theme!r}.")
        lo, hi = FONT_RANGE
        check("font_size", _is_int(self.font_size) and lo <= self.font_size <= hi,
              f"Font size must be between {lo} and {hi} points, not {self.font_size!r}.")
        check("system_prompt", isinstance(self.system_prompt, str), "The default system prompt must be text.")
        check("hub_endpoint", isinstance(self.hub_endpoint, str)
              and (self.hub_endpoint == "" or self.hub_endpoint.startswith(("http://", "https://"))),
              f"The Hub address must start with http:// or https://, not {self.hub_endpoint!r}.")
        lo, hi = PARALLEL_DOWNLOADS
        check("parallel_downloads", _is_int(self.parallel_downloads) and lo <= self.parallel_downloads <= hi,
              f"Parallel downloads must be between {lo} and {hi}, not {self.parallel_downloads!r}.")
        check("server", isinstance(self.server, dict), "Server settings must be a mapping of names to values.")
        if not isinstance(self.sampling, dict):
            out.append(("sampling", "Sampling defaults must be a mapping of parameter names to values."))
        else:
            for key, value in self.sampling.items():
                message = _sampling_problem(key, value)
                if message:
                    out.append(("sampling", f"Sampling default: {message}."))
        return out

    def validate(self) -> None:
        """Raise ``InvalidRequest`` naming the first value out of range."""
        found = self.problems()
        if found:
            raise InvalidRequest(f"Invalid setting: {found[0][1]}")

    def backend_for(self, model_format: str) -> str:
        """The backend a model of this format ("gguf" or "hf") loads with: same rule as the engine's."""
        if self.backend != "auto":
            return self.backend
        return "llamacpp" if model_format == "gguf" else "torch"

    def load_options(self, backend: str) -> dict[str, Any]:
        """Engine load options for ``backend`` (the one actually used; see ``backend_for``).

        Each backend gets only options it accepts (the engine rejects the others): llama.cpp
        never gets ``device``, PyTorch never gets ``n_gpu_layers``. For "auto" only the common ones.
        """
        if backend not in BACKENDS:
            raise InvalidRequest(f"Unknown backend {backend!r}.", f"Choose one of: {', '.join(BACKENDS)}.")
        options: dict[str, Any] = {"n_ctx": self.context_size}
        if self.threads is not None:
            options["n_threads"] = self.threads
        if backend == "llamacpp":
            options["n_gpu_layers"] = self.gpu_layers
        if backend == "torch" and self.device != "auto":
            options["device"] = self.device
        return options

    def sampling_params(self) -> SamplingParams:
        """``SamplingParams()`` with the saved defaults for new chats applied."""
        return SamplingParams().with_updates(**self.sampling)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings, or defaults (for any value that is missing or bad)."""
    return load_settings_reporting(path)[0]


def load_settings_reporting(path: Path | None = None) -> tuple[Settings, str | None]:
    """The saved settings and, when something was wrong with the file, a message for the user.

    A missing file is not a problem. Unreadable JSON gives all defaults; a bad value gives that
    value's default and keeps the rest. Either way the original is kept as ``settings.json.bad``
    and the repaired settings are written back, so the message appears once.
    Unknown keys (from a newer version of the app) are ignored.
    """
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings(), None
    except OSError as exc:
        return Settings(), f"Could not read the settings file {path} ({exc.strerror or exc}); using default settings."
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        kept = _keep_bad_copy(path, move=True)
        return Settings(), (f"The settings file {path} is damaged ({exc}); using default settings."
                            + kept)

    known = {f.name for f in fields(Settings)}
    settings = Settings(**{k: v for k, v in data.items() if k in known})
    problems = settings.problems()
    if not problems:
        return settings, None
    defaults = Settings()
    bad_fields = {name for name, _ in problems}
    changes: dict[str, Any] = {name: getattr(defaults, name) for name in bad_fields - {"sampling"}}
    if "sampling" in bad_fields:
        # Keep the good sampling defaults; drop only the bad ones.
        sampling = settings.sampling if isinstance(settings.sampling, dict) else {}
        changes["sampling"] = {k: v for k, v in sampling.items() if _sampling_problem(k, v) is None}
    settings = replace(settings, **changes)
    kept = _keep_bad_copy(path, move=False)
    try:
        save_settings(settings, path)
    except OSError:
        pass  # the message below still tells the user; the next start reports it again
    details = " ".join(message for _, message in problems)
    return settings, (f"Some settings in {path} were not usable, so their defaults are used: {details}" + kept)


def _keep_bad_copy(path: Path, move: bool) -> str:
    """Keep the original file as settings.json.bad; the sentence to add to the user's message."""
    bad = path.with_name(path.name + ".bad")
    try:
        if move:
            os.replace(path, bad)
        else:
            shutil.copyfile(path, bad)
    except OSError:
        return ""
    return f" The original file is kept as {bad}."


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Validate, then write atomically (temp file + ``os.replace``) so a crash never leaves half a file."""
    settings.validate()
    path = path or settings_path()
    write_json_atomic(path, settings.to_dict())
