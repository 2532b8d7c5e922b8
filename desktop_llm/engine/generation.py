"""Backend-independent generation: prompt building, stop sequences, UTF-8 assembly, timing.

A backend only streams ``TokenStep`` objects; everything the user sees about a reply (text,
when it stops, how fast it was) is decided here, once, for both backends.
"""

from __future__ import annotations

import codecs
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from desktop_llm.core.chat_template import render_chat
from desktop_llm.core.errors import ContextOverflow, InvalidRequest, UnsupportedParameter
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.protocol import MAX_ALTERNATIVES, MAX_STEP_TOP
from desktop_llm.engine.sampling_stages import explain_next_token

# A model needs at least one token to predict the next one from (llama.cpp fails on none).
EMPTY_PROMPT = ("The prompt is empty.", "Type something for the model to continue.")


class Cancelled(Exception):
    """Raised inside a backend when the request's cancel flag stopped prompt processing."""


@dataclass
class TokenStep:
    token_id: int
    piece: bytes
    logprob: float
    alternatives: list[tuple[int, float]] = field(default_factory=list)
    forced: bool = False  # the chosen continuation's last token, not sampled


class GenerationBackend(Protocol):
    n_ctx: int
    n_vocab: int

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]: ...
    def token_piece(self, token_id: int) -> bytes: ...
    def chat_template(self) -> str | None: ...
    def special_tokens(self) -> dict[str, str]: ...
    def check_params(self, params: SamplingParams) -> None: ...
    def stream(self, tokens: list[int], params: SamplingParams, n_alternatives: int,
               cancel: threading.Event, continuation: list[int] | None = None) -> Iterator[TokenStep]:
        """Tokens after ``tokens``. With a ``continuation``, all its ids but the last are
        evaluated after the prompt (and count as generated for the penalties); the last is
        yielded first, with ``forced=True``, then sampling goes on from there."""
        ...
    def next_logits(self, tokens: list[int], cancel: threading.Event) -> np.ndarray:
        """Raw logits (float32, a copy) of the position after ``tokens``, reusing the KV cache."""
        ...
    def is_end_token(self, token_id: int) -> bool: ...


class StopSequenceFilter:
    """Holds back text that might be the start of a stop sequence; cuts the reply at a full match."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending: list[tuple[TokenStep, str]] = []
        self.matched: str | None = None

    def _held_from(self, text: str) -> int:
        """Index in ``text`` from which a suffix could still grow into a stop sequence."""
        for start in range(max(0, len(text) - max(len(s) for s in self.stops) + 1), len(text)):
            suffix = text[start:]
            if any(s.startswith(suffix) for s in self.stops):
                return start
        return len(text)

    def push(self, step: TokenStep, text: str) -> list[tuple[TokenStep, str]]:
        """Add a token; return the tokens (with their visible text) that can be shown now."""
        if not self.stops:
            return [(step, text)]
        self.pending.append((step, text))
        joined = "".join(t for _, t in self.pending)
        hits = [(joined.find(s), s) for s in self.stops if s in joined]
        if hits:
            cut, self.matched = min(hits)
            return self._take(cut, everything=True)
        return self._take(self._held_from(joined), everything=False)

    def _take(self, visible_chars: int, everything: bool) -> list[tuple[TokenStep, str]]:
        out: list[tuple[TokenStep, str]] = []
        used = 0
        while self.pending:
            step, text = self.pending[0]
            if used + len(text) <= visible_chars:
                out.append(self.pending.pop(0))
                used += len(text)
            elif everything and used < visible_chars:
                # The stop sequence begins inside this token: show only the text before it.
                out.append((step, text[: visible_chars - used]))
                used = visible_chars
                self.pending.pop(0)
            else:
                break
        if everything:
            self.pending.clear()
        return out

    def flush(self) -> list[tuple[TokenStep, str]]:
        out, self.pending = self.pending, []
        return out


def _render_messages(backend: GenerationBackend, messages: list[dict[str, Any]]) -> tuple[list[int], str]:
    text = render_chat(backend.chat_template(), messages, add_generation_prompt=True,
                       special_tokens=backend.special_tokens())
    # The template writes BOS itself where the model wants one (as transformers does).
    return backend.tokenize(text, add_special=False, parse_special=True), text


def fit_messages(backend: GenerationBackend, messages: list[dict[str, Any]],
                 reserve: int) -> tuple[list[int], str, int]:
    """Leave out the oldest turns until the prompt plus ``reserve`` reply tokens fits the context.

    System messages are always kept, and what is left starts at a user message (many templates
    require that). Returns the tokens, the prompt text and how many messages were left out.
    """
    tokens, text = _render_messages(backend, messages)
    if len(tokens) + reserve <= backend.n_ctx:
        return tokens, text, 0
    system = [m for m in messages if m.get("role") == "system"]
    turns = [m for m in messages if m.get("role") != "system"]
    # Candidate cut points: each user message after the first, up to the last message.
    cuts = [i for i, m in enumerate(turns) if m.get("role") == "user" and i > 0] or [len(turns) - 1]
    if cuts[-1] != len(turns) - 1:
        cuts.append(len(turns) - 1)
    best: tuple[list[int], str, int] | None = None
    lo, hi = 0, len(cuts) - 1
    while lo <= hi:  # the fewest turns left out that still fit (token count falls as more are dropped)
        mid = (lo + hi) // 2
        tokens, text = _render_messages(backend, system + turns[cuts[mid]:])
        if len(tokens) + reserve <= backend.n_ctx:
            best, hi = (tokens, text, cuts[mid]), mid - 1
        else:
            lo = mid + 1
    if best is None:  # even the last message alone leaves no room for the reserve: let the caller decide
        tokens, text = _render_messages(backend, system + turns[cuts[-1]:])
        return tokens, text, cuts[-1]
    return best


def build_prompt_tokens(backend: GenerationBackend, request: dict[str, Any]) -> tuple[list[int], str]:
    """Tokens to feed the model, and the prompt text, for a raw prompt or chat messages."""
    if "messages" in request:
        return _render_messages(backend, request["messages"])
    if "prompt" in request and isinstance(request["prompt"], str):
        text = request["prompt"]
        return backend.tokenize(text, add_special=True, parse_special=True), text
    raise InvalidRequest("A generate request needs a 'prompt' (text) or 'messages' (a chat).")


def read_continuation(request: dict[str, Any], n_vocab: int) -> list[int]:
    """The request's ``continuation`` (token ids chosen after the prompt), checked; [] when absent."""
    value = request.get("continuation")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise InvalidRequest("continuation must be a list of token ids (whole numbers).")
    bad = next((t for t in value if not 0 <= t < n_vocab), None)
    if bad is not None:
        raise InvalidRequest(f"continuation names token id {bad}, but this model's ids run 0 to {n_vocab - 1}.",
                             "Pick tokens from this model's alternatives or tokenizer.")
    return value


def run_generation(
    backend: GenerationBackend,
    request: dict[str, Any],
    cancel: threading.Event,
    emit: Callable[[dict[str, Any]], None],
    received_at: float | None = None,
) -> dict[str, Any]:
    """Stream one reply as ``token`` events through ``emit``; return the ``done`` event's fields."""
    started = received_at or time.perf_counter()
    params = SamplingParams.from_dict(request.get("params"))
    backend.check_params(params)
    n_alt = int(request.get("alternatives") or 0)
    if not 0 <= n_alt <= MAX_ALTERNATIVES:
        raise InvalidRequest(f"alternatives must be between 0 and {MAX_ALTERNATIVES}, not {n_alt}.")
    continuation = read_continuation(request, backend.n_vocab)
    if continuation and (params.grammar or params.json_schema):
        # llama.cpp's grammar sampler aborts on a token its grammar does not allow.
        raise InvalidRequest(
            "A grammar or JSON schema cannot be combined with a chosen continuation: the grammar "
            "could not accept tokens it did not pick itself.",
            "Turn off the grammar / JSON schema to branch from an alternative token.")
    # The continuation's ids before the last one sit in the context like prompt tokens; the
    # last one is the reply's first token.
    history = max(0, len(continuation) - 1)
    dropped = 0
    if request.get("fit_context") and "messages" in request:
        reserve = min(params.max_tokens, backend.n_ctx // 4) + history
        tokens, _, dropped = fit_messages(backend, request["messages"], reserve)
    else:
        tokens, _ = build_prompt_tokens(backend, request)
    if not tokens and history == 0:
        raise InvalidRequest(*EMPTY_PROMPT)
    room = backend.n_ctx - len(tokens) - history
    if room < 1:
        what = f"The prompt is {len(tokens)} tokens" + (f" plus {history} chosen tokens" if history else "")
        raise ContextOverflow(
            f"{what} but the model's context holds {backend.n_ctx}.",
            "Shorten the prompt or conversation, or load the model with a larger context size.",
        )
    limit = min(params.max_tokens, room)

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stopper = StopSequenceFilter(params.stop)
    produced = 0
    first_at: float | None = None
    last_at = started
    finish = "length"
    pieces: list[str] = []

    def send(batch: list[tuple[TokenStep, str]]) -> None:
        nonlocal first_at, last_at
        for step, text in batch:
            now = time.perf_counter()
            first_at = first_at or now
            last_at = now
            pieces.append(text)
            event = {
                "event": "token",
                "token_id": step.token_id,
                "text": text,
                "logprob": step.logprob,
                "alternatives": [
                    {"token_id": tid, "text": backend.token_piece(tid).decode("utf-8", errors="replace"),
                     "logprob": lp}
                    for tid, lp in step.alternatives
                ],
            }
            if step.forced:
                event["forced"] = True
            emit(event)

    steps = backend.stream(tokens, params, n_alt, cancel, continuation)
    try:
        if cancel.is_set():
            raise Cancelled
        for step in steps:
            produced += 1
            send(stopper.push(step, decoder.decode(step.piece)))
            if stopper.matched is not None:
                finish = "stop"
                break
            if cancel.is_set():
                finish = "cancelled"
                break
            if produced >= limit:
                break
        else:
            finish = "stop"  # end-of-generation token
    except Cancelled:
        finish = "cancelled"
    finally:
        steps.close()
    if finish != "stop" or stopper.matched is None:
        tail = decoder.decode(b"", final=True)
        held = stopper.flush()
        if tail and held:
            held[-1] = (held[-1][0], held[-1][1] + tail)
        send(held)

    end = time.perf_counter()
    decode_time = (last_at - first_at) if first_at else 0.0
    return {
        "finish_reason": finish,
        "stop_sequence": stopper.matched,
        "context_full": finish == "length" and limit < params.max_tokens,
        "text": "".join(pieces),
        "usage": {"prompt_tokens": len(tokens), "completion_tokens": produced},
        "n_ctx": backend.n_ctx,
        "dropped_messages": dropped,
        "ttft_ms": round(((first_at or end) - started) * 1000, 2),
        "tokens_per_second": round((produced - 1) / decode_time, 2) if produced > 1 and decode_time > 0 else None,
        "total_ms": round((end - started) * 1000, 2),
        "seed": params.seed,
    }


def _piece_text(backend: GenerationBackend, token_id: int) -> str:
    return backend.token_piece(token_id).decode("utf-8", errors="replace")


def run_next_token(backend: GenerationBackend, request: dict[str, Any], cancel: threading.Event,
                   received_at: float | None = None) -> dict[str, Any]:
    """Step mode: the next token's distribution before and after each sampler stage, and one draw.

    Returns the ``result`` event's fields (see docs/engine-protocol.md).
    """
    started = received_at or time.perf_counter()
    params = SamplingParams.from_dict(request.get("params"))
    refused = ("mirostat_mode" if params.mirostat_mode else "grammar" if params.grammar
               else "json_schema" if params.json_schema else None)
    if refused:
        raise UnsupportedParameter(
            f"Step mode cannot use the sampling parameter '{refused}': it shows the "
            "top-k / typical / top-p / min-p / temperature chain one token at a time.",
            "Mirostat, grammars and JSON schemas are used only in normal generation; "
            "turn them off for step mode.")
    backend.check_params(params)
    top = request.get("top", 20)
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= MAX_STEP_TOP:
        raise InvalidRequest(f"top must be a whole number from 1 to {MAX_STEP_TOP}, not {top!r}.")
    continuation = read_continuation(request, backend.n_vocab)
    tokens, _ = build_prompt_tokens(backend, request)
    position = len(tokens) + len(continuation)
    if position == 0:
        raise InvalidRequest(*EMPTY_PROMPT)
    if position >= backend.n_ctx:
        raise ContextOverflow(
            f"The prompt and the chosen tokens are {position} tokens but the model's context "
            f"holds {backend.n_ctx}, so there is no room for another token.",
            "Shorten the prompt, go back a few tokens, or load the model with a larger context size.")
    logits = backend.next_logits(tokens + continuation, cancel)
    # A seed per (seed, position): stepping back and forth draws the same token at a position.
    seed = params.seed if params.seed is not None else secrets.randbits(32)
    info = explain_next_token(logits, params, continuation, top, np.random.default_rng([seed, position]))
    sampled = info["sampled"]
    return {
        "prompt_tokens": len(tokens),
        "position": position,
        "n_ctx": backend.n_ctx,
        "before": [{"token_id": tid, "text": _piece_text(backend, tid), "logprob": lp, "prob": p}
                   for tid, lp, p in info["before"]],
        "after": [{"token_id": tid, "text": _piece_text(backend, tid), "prob": p} for tid, p in info["after"]],
        "stages": info["stages"],
        "kept": info["kept"],
        "sampled": {**sampled, "text": _piece_text(backend, sampled["token_id"])},
        "is_end": bool(backend.is_end_token(sampled["token_id"])),
        "seed": seed,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }
