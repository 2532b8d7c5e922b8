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
