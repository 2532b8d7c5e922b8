"""Remote models next to local ones: listing every provider's models, and a client for a picked model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from desktop_llm.core.errors import DesktopLLMError, ModelNotFound
from desktop_llm.core.models import ModelRef
from desktop_llm.remote.client import RemoteClient
from desktop_llm.remote.keys import ProviderKeys
from desktop_llm.remote.providers import Provider, load_providers, split_remote_model_id

LIST_TIMEOUT_SECONDS = 5.0  # a provider that is down must not hold up the model list for long


def _provider_models(provider: Provider, keys: ProviderKeys, timeout: float) -> list[ModelRef]:
    try:
        return RemoteClient(provider, keys.get(provider.id)).list_models(timeout=timeout)
    except DesktopLLMError as exc:
        # One row in red with the reason, like a damaged local file: the user sees why its models are missing.
        return [ModelRef(id=f"remote:{provider.id}/", name=provider.name, path=provider.base_url, format="remote",
                         source="remote", error=f"{exc.message} {exc.hint}".strip())]


def list_remote_models(providers: list[Provider] | None = None, keys: ProviderKeys | None = None,
                       timeout: float = LIST_TIMEOUT_SECONDS) -> list[ModelRef]:
    """Every provider's models, asked in parallel; a provider that fails gives one error row."""
    providers = load_providers() if providers is None else providers
    if not providers:
        return []
    keys = keys or ProviderKeys()
    with ThreadPoolExecutor(max_workers=min(8, len(providers))) as pool:
        found = pool.map(lambda p: _provider_models(p, keys, timeout), providers)
    return [ref for refs in found for ref in refs]


def provider_of(model_id: str, providers: list[Provider] | None = None) -> Provider:
    split = split_remote_model_id(model_id)
    providers = load_providers() if providers is None else providers
    match = next((p for p in providers if split and p.id == split[0]), None)
    if split is None or match is None:
        raise ModelNotFound(f"The remote provider of {model_id} is not set up any more.",
                            "Add it again in Settings → Remote providers, or pick another model.")
    return match


def remote_ref(model_id: str, providers: list[Provider] | None = None) -> ModelRef:
    """A ref for a remote model id without asking the endpoint (to reopen a chat made with it)."""
    provider = provider_of(model_id, providers)
    _, model = split_remote_model_id(model_id) or ("", "")
    return ModelRef(id=model_id, name=f"{model} · {provider.name}", path=provider.base_url, format="remote",
                    source="remote", repo_id=model)


def client_for(ref: ModelRef, keys: ProviderKeys | None = None) -> RemoteClient:
    """A client for the provider that serves ``ref``, with its key from the keyring."""
    provider = provider_of(ref.id)
    return RemoteClient(provider, (keys or ProviderKeys()).get(provider.id))
