"""The error tree. Every message is written for the user: what happened, and what to do."""

from __future__ import annotations


class DesktopLLMError(Exception):
    """Base of all errors the app shows to a user.

    ``code`` is a stable machine name (it crosses the engine pipe); ``hint`` says what to do.
    """

    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ModelNotFound(DesktopLLMError):
    code = "model_not_found"


class ModelLoadError(DesktopLLMError):
    """The model file or folder could not be loaded (corrupt, truncated, unsupported)."""

    code = "model_load_failed"


class NoModelLoaded(DesktopLLMError):
    code = "no_model_loaded"


class UnsupportedParameter(DesktopLLMError):
    """A sampling or load parameter the chosen backend cannot honour; never silently ignored."""

    code = "unsupported_parameter"


class InvalidRequest(DesktopLLMError):
    code = "invalid_request"


class TemplateError(DesktopLLMError):
    """The chat template failed to render, or tried something the sandbox forbids."""

    code = "template_error"


class ContextOverflow(DesktopLLMError):
    code = "context_overflow"


class EngineCrashed(DesktopLLMError):
    """The engine process died (killed, segfault, native abort, out of memory)."""

    code = "engine_crashed"


class EngineError(DesktopLLMError):
    """Anything else that went wrong inside the engine."""

    code = "engine_error"


class HubError(DesktopLLMError):
    """Talking to the Hugging Face Hub (or a mirror) failed."""

    code = "hub_error"


class NoNetwork(HubError):
    code = "no_network"


class RepoNotFound(HubError):
    code = "repo_not_found"


class GatedRepo(HubError):
    """The repository needs its terms accepted on the Hub; ``url`` is the page to accept them."""

    code = "gated_repo"

    def __init__(self, message: str, hint: str = "", url: str = "") -> None:
        super().__init__(message, hint)
        self.url = url


class TokenInvalid(HubError):
    """The Hub token is wrong or expired (never echoed in the message)."""

    code = "token_invalid"


class AccessDenied(HubError):
    """The token is valid but lacks access to this repository."""

    code = "access_denied"


class RateLimited(HubError):
    code = "rate_limited"


class DownloadError(DesktopLLMError):
    """A download failed for a reason other than the Hub refusing it."""

    code = "download_failed"


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not match the Hub's SHA-256; they were discarded."""

    code = "checksum_mismatch"


class DiskFull(DownloadError):
    code = "disk_full"


_BY_CODE = {
    cls.code: cls
    for cls in (
        DesktopLLMError,
        ModelNotFound,
        ModelLoadError,
        NoModelLoaded,
        UnsupportedParameter,
        InvalidRequest,
        TemplateError,
        ContextOverflow,
        EngineCrashed,
        EngineError,
        HubError,
        NoNetwork,
        RepoNotFound,
        GatedRepo,
        TokenInvalid,
        AccessDenied,
        RateLimited,
        DownloadError,
        ChecksumMismatch,
        DiskFull,
    )
}


def error_from_code(code: str, message: str, hint: str = "") -> DesktopLLMError:
    """Rebuild an error that crossed a process boundary as (code, message, hint)."""
    return _BY_CODE.get(code, EngineError)(message, hint)


# -- Remote model providers (OpenAI-compatible endpoints) ---------------------------------------------
# Messages name the provider and its URL, never the API key.
class RemoteError(DesktopLLMError):
    """A remote OpenAI-compatible endpoint failed or answered in a way the app cannot use."""

    code = "remote_error"


class RemoteUnreachable(RemoteError):
    """Connection refused, host name unknown, TLS failure: no HTTP answer at all."""

    code = "remote_unreachable"


class RemoteAuthFailed(RemoteError):
    """The endpoint refused the API key (HTTP 401 or 403)."""

    code = "remote_auth_failed"


class RemoteModelNotFound(RemoteError, ModelNotFound):
    """The endpoint does not serve the model (also a ``ModelNotFound``, so code catching that sees it)."""

    code = "remote_model_not_found"


class RemoteRateLimited(RemoteError):
    """HTTP 429; ``retry_after`` is the seconds the endpoint asked to wait, when it said."""

    code = "remote_rate_limited"

    def __init__(self, message: str, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class RemoteTimeout(RemoteError):
    """No byte from the endpoint for the provider's timeout (while connecting or mid-reply)."""

    code = "remote_timeout"


class RemoteBadRequest(RemoteError):
    """HTTP 400 (or another 4xx): the endpoint refused the request; its own message is shown."""

    code = "remote_bad_request"


class RemoteServerError(RemoteError):
    """HTTP 5xx from the endpoint."""

    code = "remote_server_error"


class RemoteDisconnected(RemoteError):
    """The connection closed before the reply ended (no [DONE], no finish_reason)."""

    code = "remote_disconnected"


class RemoteProvidersFileDamaged(DesktopLLMError):
    """remote_providers.json cannot be read; the message names the file and what is wrong."""

    code = "remote_providers_file_damaged"


_BY_CODE.update({
    cls.code: cls
    for cls in (
        RemoteError,
        RemoteUnreachable,
        RemoteAuthFailed,
        RemoteModelNotFound,
        RemoteRateLimited,
        RemoteTimeout,
        RemoteBadRequest,
        RemoteServerError,
        RemoteDisconnected,
        RemoteProvidersFileDamaged,
    )
})
