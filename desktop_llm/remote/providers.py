"""Remote providers: OpenAI-compatible endpoints the user added, kept in ``remote_providers.json``.

The file holds names, URLs and options only. API keys live in the OS keyring (``keys.py``), so the
file can be shared, backed up or shown in a bug report without leaking one.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from desktop_llm.core.atomic_file import write_json_atomic
from desktop_llm.core.errors import InvalidRequest, RemoteProvidersFileDamaged
from desktop_llm.core.paths import app_home

PROVIDERS_FILE = "remote_providers.json"
FILE_VERSION = 1
MODEL_PREFIX = "remote:"
_SLUG_MAX = 40
# Paths a user may paste from an API's documentation instead of the base URL.
_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")


@dataclass
class Provider:
    """One remote endpoint. ``id`` is the slug used in model ids and keyring entries."""

    id: str
    name: str
    base_url: str
    timeout_seconds: float = 60.0  # between bytes; the connect timeout is min(10, this)
    sampling_extensions: bool = True  # also send llama.cpp-style sampler fields (see params.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provider:
        """Build from JSON; raises ``ValueError`` saying which field is wrong. Unknown keys are dropped."""
        if not isinstance(d, dict):
            raise ValueError("a provider must be a JSON object")
        for key in ("id", "name", "base_url"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise ValueError(f"a provider has no valid {key!r}")
        timeout = d.get("timeout_seconds", 60.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"provider {d['id']!r} has an invalid timeout_seconds ({timeout!r})")
        extensions = d.get("sampling_extensions", True)
        if not isinstance(extensions, bool):
            raise ValueError(f"provider {d['id']!r} has an invalid sampling_extensions ({extensions!r})")
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        data["timeout_seconds"] = float(timeout)
        return cls(**data)

    @property
    def connect_timeout(self) -> float:
        return min(10.0, self.timeout_seconds)


def providers_path() -> Path:
    return app_home() / PROVIDERS_FILE


def load_providers(path: Path | None = None) -> list[Provider]:
    """The saved providers; ``[]`` when there is no file. A damaged file raises, naming it and the problem."""
    path = path or providers_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _damaged(path, f"it cannot be read ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _damaged(path, f"it is not valid JSON ({exc})") from exc
    items = data.get("providers") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise _damaged(path, "it has no list of providers")
    providers: list[Provider] = []
    seen: set[str] = set()
    for i, item in enumerate(items, 1):
        try:
            provider = Provider.from_dict(item)
        except ValueError as exc:
            raise _damaged(path, f"entry {i}: {exc}") from exc
        if provider.id in seen:
            raise _damaged(path, f"entry {i}: the id {provider.id!r} is used twice")
        seen.add(provider.id)
        providers.append(provider)
    return providers


def _damaged(path: Path, what: str) -> RemoteProvidersFileDamaged:
    return RemoteProvidersFileDamaged(
        f"The remote providers file {path} is damaged: {what}.",
        "Fix the file, or move it away and add the providers again in Settings → Remote providers "
        "(their API keys stay in the system keyring).")


def save_providers(providers: list[Provider], path: Path | None = None) -> None:
    """Write the providers in one step. Only ``Provider`` fields are written: never a key."""
    path = path or providers_path()
    write_json_atomic(path, {"version": FILE_VERSION, "providers": [p.to_dict() for p in providers]})


def normalize_base_url(url: str) -> str:
    """Validate and tidy a base URL: http(s) only, no trailing "/", "/v1" added to a bare host.

    Raises ``InvalidRequest`` saying what is wrong.
    """
    text = (url or "").strip()
    if not text:
        raise InvalidRequest("Enter the provider's base URL, for example http://127.0.0.1:8080/v1.")
    if "://" not in text:
        raise InvalidRequest(f"{text!r} is not a web address: it must start with http:// or https://.",
                             "For example http://127.0.0.1:8080/v1 or https://api.example.com/v1.")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest(f"The base URL {text!r} uses {parts.scheme}://; only http:// and https:// are supported.")
    try:
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError as exc:
        raise InvalidRequest(f"The base URL {text!r} has an invalid port.") from exc
    if not host:
        raise InvalidRequest(f"The base URL {text!r} has no host name.")
    if parts.username or parts.password:
        # Credentials in the URL would end up in remote_providers.json.
        raise InvalidRequest("Do not put a user name or password in the base URL.",
                             "Enter the API key in the provider's API key field; it is kept in the system keyring.")
    if parts.query or parts.fragment:
        raise InvalidRequest(f"The base URL {text!r} must not have a query (?…) or fragment (#…).")
    path = parts.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    else:
        if not path:
            path = "/v1"  # a bare host: OpenAI-compatible servers serve the API under /v1
    return urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:_SLUG_MAX].strip("-")
    return slug or "provider"


def make_provider(name: str, base_url: str, existing: list[Provider], **kw: Any) -> Provider:
    """A new provider with a checked URL and an id no provider in ``existing`` has.

    ``kw``: ``timeout_seconds``, ``sampling_extensions``. Bad input raises ``InvalidRequest``.
    """
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("Give the provider a name, for example \"My vLLM\".")
    url = normalize_base_url(base_url)
    unknown = sorted(set(kw) - {"timeout_seconds", "sampling_extensions"})
    if unknown:
        raise InvalidRequest(f"Unknown provider option(s): {', '.join(unknown)}.")
    timeout = kw.get("timeout_seconds", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidRequest(f"The timeout must be a number of seconds above 0, not {timeout!r}.")
    taken = {p.id for p in existing}
    base = slugify(name)
    slug, n = base, 2
    while slug in taken:
        slug = f"{base}-{n}"
        n += 1
    return Provider(id=slug, name=name, base_url=url, timeout_seconds=float(timeout),
                    sampling_extensions=bool(kw.get("sampling_extensions", True)))


def remote_model_id(provider_id: str, model: str) -> str:
    """The app-wide id of a remote model: ``remote:<provider_id>/<model>`` (the model may hold "/")."""
    return f"{MODEL_PREFIX}{provider_id}/{model}"


def split_remote_model_id(model_id: str) -> tuple[str, str] | None:
    """``(provider_id, model)`` from a remote model id; None for any other id."""
    if not isinstance(model_id, str) or not model_id.startswith(MODEL_PREFIX):
        return None
    provider_id, slash, model = model_id[len(MODEL_PREFIX):].partition("/")
    if not provider_id or not slash or not model:
        return None
    return provider_id, model
