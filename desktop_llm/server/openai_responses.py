"""Engine events turned into OpenAI-style response objects and stream chunks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from desktop_llm.server.openai_requests import ParsedRequest


def _finish_reason(done: dict[str, Any]) -> str:
    return "length" if done.get("finish_reason") == "length" or done.get("context_full") else "stop"


def usage_of(done: dict[str, Any]) -> dict[str, int]:
    usage = done.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _token_bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_logprob(token: dict[str, Any]) -> dict[str, Any]:
    """One token's entry of ``choices[].logprobs.content``."""
    return {
        "token": token["text"], "logprob": token.get("logprob"), "bytes": _token_bytes(token["text"]),
        "top_logprobs": [{"token": a["text"], "logprob": a["logprob"], "bytes": _token_bytes(a["text"])}
                         for a in token.get("alternatives") or []],
    }


def completion_logprobs(tokens: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object for these tokens; ``offset``: characters before them."""
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t["text"])
    return {
        "tokens": [t["text"] for t in tokens],
        "token_logprobs": [t.get("logprob") for t in tokens],
        "top_logprobs": [{a["text"]: a["logprob"] for a in t.get("alternatives") or []} for t in tokens],
        "text_offset": offsets,
    }


class ResponseBuilder:
    """Builds one request's response: the whole object, or its stream chunks, in OpenAI's shapes."""

    def __init__(self, request: ParsedRequest, model_id: str) -> None:
        self.request = request
        self.model = model_id
        self.created = int(time.time())
        prefix = "chatcmpl" if request.kind == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self._chars = 0  # text streamed so far, for completions' text offsets
        self._plain: tuple[str, str] | None = None  # the token chunk's JSON around its text (see token_json)

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices}

    # -- whole responses ---------------------------------------------------------------------------
    def response(self, tokens: list[dict[str, Any]], done: dict[str, Any]) -> dict[str, Any]:
        text = "".join(t["text"] for t in tokens)
        reason = _finish_reason(done)
        if self.request.kind == "chat":
            logprobs = None
            if self.request.logprobs:
                logprobs = {"content": [chat_logprob(t) for t in tokens], "refusal": None}
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "logprobs": logprobs, "finish_reason": reason}
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "finish_reason": reason,
                      "logprobs": completion_logprobs(tokens) if self.request.logprobs else None}
            body = self._envelope("text_completion", [choice])
        body["usage"] = usage_of(done)
        return body

    # -- stream chunks -----------------------------------------------------------------------------
    def first_chunk(self) -> dict[str, Any] | None:
        """Chat streams open with the role, as OpenAI's do; completions have no opening chunk."""
        if self.request.kind != "chat":
            return None
        return self._chunk({"role": "assistant", "content": ""}, None, None)

    def token_json(self, token: dict[str, Any]) -> str:
        """``token_chunk`` as JSON text. Without logprobs, only the token's text changes from chunk to
        chunk: the rest is serialised once, which keeps the per-token cost of streaming small."""
        if self.request.logprobs:
            return json.dumps(self.token_chunk(token), ensure_ascii=False)
        if self._plain is None:
            marker = "\u0000TEXT\u0000"
            whole = json.dumps(self.token_chunk({"text": marker}), ensure_ascii=False)
            head, _, tail = whole.partition(json.dumps(marker, ensure_ascii=False))
            self._plain = (head, tail)
        self._chars += len(token["text"])
        return self._plain[0] + json.dumps(token["text"], ensure_ascii=False) + self._plain[1]

    def token_chunk(self, token: dict[str, Any]) -> dict[str, Any]:
        if self.request.kind == "chat":
            logprobs = {"content": [chat_logprob(token)], "refusal": None} if self.request.logprobs else None
            return self._chunk({"content": token["text"]}, None, logprobs)
        logprobs = completion_logprobs([token], self._chars) if self.request.logprobs else None
        self._chars += len(token["text"])
        return self._envelope("text_completion", [{"index": 0, "text": token["text"], "finish_reason": None,
                                                   "logprobs": logprobs}])

    def final_chunks(self, done: dict[str, Any]) -> list[dict[str, Any]]:
        reason = _finish_reason(done)
        if self.request.kind == "chat":
            chunks = [self._chunk({}, reason, None)]
        else:
            chunks = [self._envelope("text_completion", [{"index": 0, "text": "", "finish_reason": reason,
                                                          "logprobs": None}])]
        if self.request.include_usage:
            last = self._envelope(chunks[0]["object"], [])
            last["usage"] = usage_of(done)
            chunks.append(last)
        return chunks

    def _chunk(self, delta: dict[str, Any], reason: str | None, logprobs: dict[str, Any] | None) -> dict[str, Any]:
        return self._envelope("chat.completion.chunk",
                              [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}])
