"""OpenAI-style request bodies checked and turned into what the engine takes.

Every field is either used, or refused with an OpenAI-style error naming it: a client that asks
for something this server cannot do (``n: 3``, tools, audio) is told so instead of silently
getting a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.protocol import MAX_ALTERNATIVES


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status, as the OpenAI API does."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ParsedRequest:
    kind: str  # "chat" or "completion"
    model: str
    params: SamplingParams
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def alternatives(self) -> int:
        return self.top_logprobs if self.logprobs else 0


# Fields of the OpenAI API this server does not do; asking for them is an error that says so.
_NOT_SUPPORTED = {
    "tools": "tool calling", "tool_choice": "tool calling", "functions": "function calling",
    "function_call": "function calling", "parallel_tool_calls": "tool calling", "audio": "audio output",
    "modalities": "other output modalities", "prediction": "predicted outputs", "suffix": "suffix insertion",
    "web_search_options": "web search", "reasoning_effort": "reasoning effort",
}
# Fields that change nothing here and are accepted as the OpenAI API accepts them.
_IGNORED = ("user", "metadata", "store", "service_tier", "stream_options")
# Sampling fields beyond OpenAI's, with the names llama.cpp's server uses (and vLLM's repetition_penalty).
_EXTENSIONS = {
    "top_k": ("top_k", int), "min_p": ("min_p", float), "typical_p": ("typical_p", float),
    "repeat_penalty": ("repeat_penalty", float), "repetition_penalty": ("repeat_penalty", float),  # vLLM's name
    "repeat_last_n": ("repeat_last_n", int),
    "mirostat": ("mirostat_mode", int), "mirostat_tau": ("mirostat_tau", float),
    "mirostat_eta": ("mirostat_eta", float), "grammar": ("grammar", str),
}
_COMMON = {"model", "stream", "temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
           "frequency_penalty", "logit_bias", "n", "response_format", "logprobs", *_EXTENSIONS, *_IGNORED,
           *_NOT_SUPPORTED}
_CHAT_FIELDS = _COMMON | {"messages", "top_logprobs", "max_completion_tokens"}
_COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "best_of"}
_ROLES = ("system", "user", "assistant", "developer")
# A reply with no max_tokens: OpenAI's completions default, and for chat as much as the context holds.
COMPLETION_DEFAULT_MAX_TOKENS = 16
CHAT_DEFAULT_MAX_TOKENS = 1 << 20


def _bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _number(body: dict[str, Any], name: str, kind: type, low: float | None = None,
            high: float | None = None) -> Any:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise _bad(f"'{name}' must be {'a whole number' if kind is int else 'a number'}, not {value!r}.", name,
                   "invalid_type")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _bad(f"'{name}' must be between {low} and {high}, not {value}.", name)
    return kind(value)


# What a field left out means: OpenAI's defaults (no top-k, min-p or repeat penalty, which its API does
# not have), so a client gets the sampling it asked for; llama.cpp-style fields can add them.
OPENAI_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


def _common_params(body: dict[str, Any], kind: str) -> dict[str, Any]:
    values: dict[str, Any] = dict(OPENAI_DEFAULTS)
    for name, (target, typ) in _EXTENSIONS.items():
        if body.get(name) is not None:
            values[target] = body[name] if typ is str else _number(body, name, typ)
    if body.get("temperature") is not None:
        values["temperature"] = _number(body, "temperature", float, 0, 2)
    if body.get("top_p") is not None:
        values["top_p"] = _number(body, "top_p", float, 0, 1) or 1e-6  # top_p 0 means "only the top token"
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            values[name] = _number(body, name, float, -2, 2)
    if body.get("seed") is not None:
        values["seed"] = _number(body, "seed", int) % 2**32
    limit_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if body.get(limit_name) is not None:
        values["max_tokens"] = _number(body, limit_name, int, 1)
    else:
        values["max_tokens"] = CHAT_DEFAULT_MAX_TOKENS if kind == "chat" else COMPLETION_DEFAULT_MAX_TOKENS
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > 4:
            raise _bad("'stop' must be a string or a list of up to 4 strings.", "stop")
        values["stop"] = [s for s in stops if s]
    bias = body.get("logit_bias")
    if bias:
        if not isinstance(bias, dict):
            raise _bad("'logit_bias' must map token ids to biases from -100 to 100.", "logit_bias")
        try:
            values["logit_bias"] = {int(k): float(v) for k, v in bias.items()}
        except (TypeError, ValueError):
            raise _bad("'logit_bias' keys must be token ids and values numbers.", "logit_bias") from None
    fmt = body.get("response_format")
    if fmt is not None:
        values.update(_response_format(fmt))
    return values


def _response_format(fmt: Any) -> dict[str, Any]:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"json_schema": {"type": "object"}}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format json_schema needs 'json_schema': {'name': ..., 'schema': {...}}.",
                       "response_format")
        return {"json_schema": schema}
    raise _bad("'response_format' type must be 'text', 'json_object' or 'json_schema'.", "response_format")


def _check_fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None, "invalid_json")
    for name in body:
        if name not in allowed:
            raise _bad(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")
        if name in _NOT_SUPPORTED and body[name] not in (None, [], {}, False):
            raise _bad(f"'{name}' ({_NOT_SUPPORTED[name]}) is not supported by this server.", name,
                       "unsupported_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("'model' is required: one of the ids GET /v1/models lists.", "model", "missing_required_parameter")
    if body.get("n") not in (None, 1):
        raise _bad("'n' must be 1: this server writes one reply per request.", "n", "unsupported_value")
    return body


def _sampling(values: dict[str, Any]) -> SamplingParams:
    try:
        params = SamplingParams.from_dict(values)
        params.validate()
    except DesktopLLMError as exc:
        raise _bad(exc.message) from None
    return params


def parse_chat(body: Any) -> ParsedRequest:
    body = _check_fields(body, _CHAT_FIELDS)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {role, content}.", "messages", "missing_required_parameter")
    clean: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise _bad(f"messages[{i}].role must be one of {', '.join(_ROLES)}.", f"messages[{i}].role")
        clean.append({"role": "system" if role == "developer" else role,
                      "content": _content_text(message.get("content"), i)})
    logprobs = bool(body.get("logprobs"))
    top = body.get("top_logprobs")
    if top is not None:
        top = _number(body, "top_logprobs", int, 0, MAX_ALTERNATIVES)
        if not logprobs:
            raise _bad("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    return ParsedRequest("chat", body["model"], _sampling(_common_params(body, "chat")), messages=clean,
                         stream=bool(body.get("stream")), include_usage=_include_usage(body),
                         logprobs=logprobs, top_logprobs=top or 0)


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: text only (this server has no image input)
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(f"messages[{index}].content: only text parts are supported.",
                           f"messages[{index}].content", "unsupported_value")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise _bad(f"messages[{index}].content must be text.", f"messages[{index}].content")


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def parse_completion(body: Any) -> ParsedRequest:
    body = _check_fields(body, _COMPLETION_FIELDS)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad("'prompt' must be a string (a list of prompts or of token ids is not supported).", "prompt")
    if body.get("echo"):
        raise _bad("'echo' is not supported by this server.", "echo", "unsupported_value")
    if body.get("best_of") not in (None, 1):
        raise _bad("'best_of' must be 1.", "best_of", "unsupported_value")
    top = 0
    if body.get("logprobs") is not None:
        top = _number(body, "logprobs", int, 0, MAX_ALTERNATIVES)
    return ParsedRequest("completion", body["model"], _sampling(_common_params(body, "completion")),
                         prompt=prompt, stream=bool(body.get("stream")), include_usage=_include_usage(body),
                         logprobs=body.get("logprobs") is not None, top_logprobs=top)
