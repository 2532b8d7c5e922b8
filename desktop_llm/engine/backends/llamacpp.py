"""llama.cpp backend (llama-cpp-python) for GGUF files.

One ``Llama`` per backend object, used only from the engine's model-owner thread: a ``Llama``
is not thread safe and segfaults if used after ``close()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaBatch, LlamaSampler

from desktop_llm.core.errors import InvalidRequest, ModelLoadError
from desktop_llm.core.gguf_header import read_gguf_metadata
from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.alternatives import ReplyScorer
from desktop_llm.engine.backends.options import ALL_OPTIONS, LLAMACPP_OPTIONS, check_options
from desktop_llm.engine.generation import Cancelled, TokenStep
from desktop_llm.engine.penalties import PenaltyWindow

DEFAULT_CTX = 4096
RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


def _token_to_piece(vocab: object, token_id: int) -> bytes:
    """A token's bytes, special tokens included, however long (llama-cpp-python's own buffer is 32 bytes)."""
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token_id, buf, size, 0, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n


class _UnusedChatFormatter:
    """Stands in for llama-cpp-python's template compiler while a model loads (see below)."""

    def __init__(self, **_kwargs: object) -> None:
        pass

    def to_chat_handler(self) -> None:
        return None


@contextlib.contextmanager
def _without_llama_cpp_chat_handlers() -> Iterator[None]:
    """``Llama()`` compiles every chat template in the GGUF at load; a broken one fails the whole load.

    The app renders templates itself (core.chat_template, sandboxed, shared with the torch
    backend), so llama-cpp-python's handlers are never used: skip compiling them, so that a
    model with a bad template still loads and reports the template problem only for chat.
    """
    module = llama_cpp.llama.llama_chat_format
    original = module.Jinja2ChatFormatter
    module.Jinja2ChatFormatter = _UnusedChatFormatter
    try:
        yield
    finally:
        module.Jinja2ChatFormatter = original


class _NextTokenBatch:
    """A llama_batch of one token, its logits wanted: the next position of a reply.

    Decoding it is ``Llama.eval([token])`` without the generality that costs tens of
    microseconds a token with the caches cold from the previous decode (a KV-cache trim, a batch
    refilled field by field): during a reply the cache already ends where the token goes.
    """

    def __init__(self) -> None:
        self._owner = LlamaBatch(n_tokens=1, embd=0, n_seq_max=1)  # frees the batch when closed
        batch = self.batch = self._owner.batch
        batch.n_tokens = 1
        batch.seq_id[0][0] = 0
        batch.n_seq_id[0] = 1
        batch.logits[0] = True
        self._token, self._pos = batch.token, batch.pos

    def decode(self, llm: llama_cpp.Llama, token: int) -> None:
        n = llm.n_tokens
        self._token[0] = token
        self._pos[0] = n
        code = llama_cpp.llama_decode(llm._ctx.ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        llm.input_ids[n] = token  # as eval() keeps them: the next prompt's KV-cache reuse compares against it
        llm.n_tokens = n + 1

    def close(self) -> None:
        self._owner.close()


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self) -> None:
        self.llm: llama_cpp.Llama | None = None
        self.n_ctx = 0
        self.n_vocab = 0
        self._cancel: threading.Event | None = None
        # Kept alive for as long as llama.cpp holds the pointer.
        self._abort_cb = llama_cpp.ggml_abort_callback(self._should_abort)
        self._no_abort_cb = llama_cpp.ggml_abort_callback()
        self._pieces: dict[int, bytes] = {}
        self._ends: dict[int, bool] = {}  # is_end_token, cached: it is asked once per generated token
        self._logits_address: int | None = None
        self._logits_view: np.ndarray | None = None
        self._next: _NextTokenBatch | None = None
        self._meta: dict[str, Any] = {}

    # -- loading ---------------------------------------------------------------------------
    def load(self, ref: ModelRef, options: dict[str, Any], progress: Any) -> dict[str, Any]:
        if ref.format != "gguf":
            raise ModelLoadError(f"{ref.name} is a model folder; the llama.cpp backend loads GGUF files.",
                                 "Load it with the PyTorch backend, or pick a .gguf file.")
        opts = check_options(options, LLAMACPP_OPTIONS, "llama.cpp", ALL_OPTIONS)
        # Read the header ourselves first: a clear message for a non-GGUF or truncated file.
        self._meta = read_gguf_metadata(ref.path)
        arch = self._meta.get("general.architecture", "")
        train_ctx = int(self._meta.get(f"{arch}.context_length") or DEFAULT_CTX)
        n_ctx = opts.get("n_ctx") or min(train_ctx, DEFAULT_CTX)
        if n_ctx < 16:
            raise InvalidRequest(f"Context size {n_ctx} is too small; use at least 16 tokens.")
        gpu = llama_cpp.llama_supports_gpu_offload()
        n_gpu_layers = opts.get("n_gpu_layers", -1 if gpu else 0)
        progress("loading weights", 0.0)
        try:
            with _without_llama_cpp_chat_handlers():
                self.llm = llama_cpp.Llama(
                    model_path=ref.path,
                    n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers,
                    n_threads=opts.get("n_threads") or max(1, (os.cpu_count() or 1)),
                    n_batch=opts.get("n_batch", 512),
                    flash_attn=opts.get("flash_attn", False),
                    use_mmap=opts.get("use_mmap", True),
                    use_mlock=opts.get("use_mlock", False),
                    seed=RANDOM_SEED,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {ref.name}: {exc}.",
                "The file may be damaged or incomplete (download it again), or made for a newer llama.cpp.",
            ) from exc
        self.n_ctx = self.llm.n_ctx()
        self._vocab = self.llm._model.vocab
        self._n_vocab = self.n_vocab = self.llm.n_vocab()
        self._next = _NextTokenBatch()
        progress("loading weights", 1.0)
        return {
            "backend": self.name,
            "device": "gpu" if gpu and n_gpu_layers != 0 else "cpu",
            "n_ctx": self.n_ctx,
            "n_ctx_train": train_ctx,
            "n_vocab": self._n_vocab,
            "architecture": arch,
            "has_chat_template": bool(self.chat_template()),
            "options": {"n_gpu_layers": n_gpu_layers, "flash_attn": opts.get("flash_attn", False),
                        "use_mmap": opts.get("use_mmap", True), "n_threads": self.llm.n_threads},
        }

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            self._pieces.clear()
            self._ends.clear()
            self._logits_address = self._logits_view = None
        if self._next is not None:
            self._next.close()
            self._next = None

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def token_piece(self, token_id: int) -> bytes:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = _token_to_piece(self._vocab, token_id)
        return piece

    def detokenize(self, ids: list[int]) -> str:
        # Joined from pieces: llama-cpp-python's detokenize drops tokens longer than 32 bytes.
        return b"".join(self.token_piece(t) for t in ids).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        return self._meta.get("tokenizer.chat_template") or None

    def special_tokens(self) -> dict[str, str]:
        out = {}
        for name, tid in (("bos_token", self.llm.token_bos()), ("eos_token", self.llm.token_eos())):
            if tid is not None and tid >= 0:
                out[name] = self.token_piece(tid).decode("utf-8", errors="replace")
        return out

    # -- sampling ----------------------------------------------------------------------------
    def check_params(self, params: SamplingParams) -> None:
        # llama.cpp honours every SamplingParams field; only the values need checking here.
        bad = [t for t in params.logit_bias if not 0 <= t < self._n_vocab]
        if bad:
            raise InvalidRequest(
                f"logit_bias names token id {bad[0]}, but this model's ids run 0 to {self._n_vocab - 1}.")

    def _sampler(self, params: SamplingParams, native_penalties: bool = False) -> LlamaSampler:
        """The chain. Logit bias and penalties are left to ``PenaltyWindow`` (see engine/penalties.py)
        unless ``native_penalties``: llama.cpp's own samplers, kept to check that the two agree."""
        seed = RANDOM_SEED if params.seed is None else params.seed
        s = LlamaSampler()
        if native_penalties:
            if params.logit_bias:
                s.add_logit_bias(self._n_vocab, params.logit_bias)
            s.add_penalties(self._n_vocab, params.repeat_last_n, params.repeat_penalty,
                            params.frequency_penalty, params.presence_penalty)
        if params.grammar or params.json_schema:
            s.add_grammar(self.llm._model, self._grammar(params))
        if params.temperature == 0:
            s.add_greedy()
        elif params.mirostat_mode == 1:
            s.add_temp(params.temperature)
            s.add_mirostat(self._n_vocab, seed, params.mirostat_tau, params.mirostat_eta, 100)
        elif params.mirostat_mode == 2:
            s.add_temp(params.temperature)
            s.add_mirostat_v2(seed, params.mirostat_tau, params.mirostat_eta)
        else:
            if params.top_k > 0:
                s.add_top_k(params.top_k)
            s.add_typical(params.typical_p, 1)
            s.add_top_p(params.top_p, 1)
            s.add_min_p(params.min_p, 1)
            s.add_temp(params.temperature)
            s.add_dist(seed)
        return s

    def _grammar(self, params: SamplingParams) -> llama_cpp.LlamaGrammar:
        import json

        try:
            if params.json_schema:
                return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(params.json_schema), verbose=False)
            return llama_cpp.LlamaGrammar.from_string(params.grammar, verbose=False)
        # The schema converter reports unknown schemas with assert, hence AssertionError.
        except (ValueError, RuntimeError, TypeError, KeyError, AssertionError) as exc:
            what = "JSON schema" if params.json_schema else "GBNF grammar"
            raise InvalidRequest(f"The {what} could not be used: {exc}.", f"Check the {what}'s syntax.") from exc

    def _should_abort(self, _data: ctypes.c_void_p) -> bool:
        cancel = self._cancel
        return bool(cancel is not None and cancel.is_set())

    def _eval_prompt(self, tokens: list[int], cancel: threading.Event) -> None:
        llm = self.llm
        # Reuse the KV cache for the prefix shared with the previous request; always decode
        # at least the last prompt token so its logits are fresh.
        cached = llm.input_ids[: llm.n_tokens]
        keep = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)
        llm.n_tokens = keep
        # The abort callback is on only while the prompt is processed: during decoding the
        # cancel flag is checked between tokens, and the callback would cost per graph node.
        self._cancel = cancel
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)
        try:
            llm.eval(tokens[keep:])
        except RuntimeError:
            if cancel.is_set():
                llm.n_tokens = 0  # the KV cache is in an unknown state after an abort
                raise Cancelled from None
            raise
        finally:
            llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._no_abort_cb, None)
            self._cancel = None

    def next_logits(self, tokens: list[int], cancel: threading.Event) -> np.ndarray:
        """Raw logits of the position after ``tokens`` (reusing the KV cache), copied out of llama.cpp."""
        self._eval_prompt(tokens, cancel)
        return self._last_logits().copy()

    def is_end_token(self, token_id: int) -> bool:
        is_end = self._ends.get(token_id)
        if is_end is None:
            is_end = self._ends[token_id] = bool(llama_cpp.llama_vocab_is_eog(self._vocab, token_id))
        return is_end

    def _last_logits(self) -> np.ndarray:
        """The last position's logits, as a view into llama.cpp's buffer (valid until the next decode).

        The view is made once per buffer address: building it from the ctypes pointer each time
        cost tens of microseconds a token.
        """
        ptr = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        address = ctypes.cast(ptr, ctypes.c_void_p).value
        if address != self._logits_address:
            self._logits_view = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
            self._logits_address = address
        return self._logits_view

    def stream(self, tokens: list[int], params: SamplingParams, n_alternatives: int,
               cancel: threading.Event, continuation: list[int] | None = None,
               native_penalties: bool = False) -> Iterator[TokenStep]:
        llm = self.llm
        sampler = self._sampler(params, native_penalties)
        window = PenaltyWindow(params, enabled=not native_penalties)
        next_batch = self._next
        assert next_batch is not None
        try:
            with ReplyScorer() as score:
                if continuation:
                    # The chosen tokens count as generated for the penalties. (A grammar sampler in
                    # the chain would abort on tokens it did not allow: generation refuses that mix.)
                    for tok in continuation:
                        llama_cpp.llama_sampler_accept(sampler.sampler, tok)
                        window.accept(tok)
                    self._eval_prompt(tokens + continuation[:-1], cancel)
                    forced = continuation[-1]
                    logprob, alts = score(self._last_logits(), forced, n_alternatives)
                    yield TokenStep(forced, self.token_piece(forced), logprob, alts, forced=True)
                    # A chosen end-of-generation token is shown, then the reply ends there.
                    if llm.n_tokens >= self.n_ctx or self.is_end_token(forced):
                        return
                    next_batch.decode(llm, forced)
                else:
                    self._eval_prompt(tokens, cancel)
                while True:
                    logits = self._last_logits()
                    adjusted = window.apply(logits)  # the chain reads llama.cpp's logits buffer: adjust it there
                    token = sampler.sample(llm._ctx, -1)
                    if adjusted:
                        window.restore()  # back to the model's own logits for the log-probabilities
                    if self.is_end_token(token):
                        return
                    window.accept(token)
                    logprob, alts = score(logits, token, n_alternatives)
                    yield TokenStep(token, self.token_piece(token), logprob, alts)
                    if llm.n_tokens >= self.n_ctx:
                        return
                    next_batch.decode(llm, token)
        finally:
            sampler.close()
