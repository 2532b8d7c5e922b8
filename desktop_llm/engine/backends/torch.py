"""PyTorch + transformers backend for Hugging Face model folders (safetensors) and GGUF files.

A GGUF file is dequantized by transformers (``from_pretrained(folder, gguf_file=name)``) once,
and a safetensors copy (weights, tokenizer, chat template) is kept in the app's cache, so later
loads take a fraction of a second instead of many seconds. Pickle weights (``*.bin``) are never
loaded: unpickling runs code from the file.

Generation runs its own loop over the model's forward pass with a KV cache (no ``generate()``),
so each step's raw logits are at hand for log-probabilities and alternatives, computed with the
same numpy code as the llama.cpp backend. Sampling follows llama.cpp's chain and semantics.

torch and transformers are imported only here; this module is only imported in the engine process.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from desktop_llm.core.errors import InvalidRequest, ModelLoadError, UnsupportedParameter
from desktop_llm.core.models import ModelRef
from desktop_llm.core.paths import cache_dir
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.alternatives import ReplyScorer
from desktop_llm.engine.backends.options import ALL_OPTIONS, TORCH_OPTIONS, check_options
from desktop_llm.engine.generation import Cancelled, TokenStep

DEFAULT_CTX = 4096
# Long prompts are processed in chunks so that a cancel is noticed between them.
PROMPT_CHUNK = 256
# Bump when the way copies are made changes, so old copies are not reused.
GGUF_COPY_VERSION = 1
GGUF_COPY_DIR = "torch-from-gguf"
CONVERT_STAGE = "converting GGUF to safetensors (first load only)"
# A leftover partial copy older than this comes from a crashed conversion and is removed.
STALE_PARTIAL_SECONDS = 6 * 3600
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

Progress = Callable[[str, float], None]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _flatten_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, (list, tuple, set)):
        return {int(v) for v in value if isinstance(v, int)}
    return set()


def _decoder_types(tokenizer: Any) -> set[str]:
    """Names of the decoder steps of a fast tokenizer ('ByteLevel', 'ByteFallback', 'Metaspace' …)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    try:
        decoder = json.loads(backend.to_str()).get("decoder") or {}
    except (ValueError, AttributeError):
        return set()
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        found.add(str(node.get("type")))
        if node.get("type") == "Replace" and (node.get("pattern") or {}).get("String") == "▁":
            found.add("Metaspace")
        for child in node.get("decoders") or []:
            walk(child)

    walk(decoder)
    return found


def _forward_kwargs(model: Any) -> tuple[str, str | None]:
    """The forward() argument names for the KV cache and for 'logits of the last position only'.

    transformers 5.x calls the cache ``cache``; 4.x called it ``past_key_values``.
    """
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    return cache_kw, keep_kw


class TorchBackend:
    name = "torch"

    def __init__(self) -> None:
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.n_ctx = 0
        self.weights_path: Path | None = None
        self._n_vocab = 0
        self.n_vocab = 0
        self._eog: set[int] = set()
        self._pieces: dict[int, bytes] = {}
        self._piece_style = "decode"
        self._added: dict[int, str] = {}
        self._cache: Any = None
        self._cache_tokens: list[int] = []
        self._cache_kw = "cache"
        self._keep_kw: str | None = None

    # -- loading ---------------------------------------------------------------------------
    def load(self, ref: ModelRef, options: dict[str, Any], progress: Progress) -> dict[str, Any]:
        opts = check_options(options, TORCH_OPTIONS, "PyTorch", ALL_OPTIONS)
        device = _pick_device(opts.get("device"))
        dtype = _pick_dtype(opts.get("dtype"), device)
        n_threads = opts.get("n_threads")
        if n_threads is not None:
            if n_threads < 1:
                raise InvalidRequest(f"Load option 'n_threads' must be at least 1, not {n_threads}.")
            torch.set_num_threads(n_threads)
        trust = bool(opts.get("trust_remote_code", False))
        if opts.get("n_ctx") is not None and opts["n_ctx"] < 16:
            raise InvalidRequest(f"Context size {opts['n_ctx']} is too small; use at least 16 tokens.")

        if ref.format == "gguf":
            if trust:
                raise UnsupportedParameter("The load option 'trust_remote_code' does not apply to GGUF files.",
                                           "Remove it: GGUF models run with transformers' own code.")
            folder = self._gguf_copy(Path(ref.path), progress)
        elif ref.format == "hf":
            folder = Path(ref.path)
            _check_hf_folder(folder, ref.name)
        else:
            raise ModelLoadError(f"{ref.name} has an unknown model format {ref.format!r}.",
                                 "Pick a GGUF file or a Hugging Face model folder.")

        from transformers import AutoModelForCausalLM, AutoTokenizer

        progress("loading weights", 0.0)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust)
            progress("loading weights", 0.1)
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=trust,
                **_dtype_kwarg(dtype),
            )
            model.to(device)
        except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError) as exc:
            raise _load_error(ref.name, exc, trust) from exc
        model.eval()
        progress("loading weights", 1.0)

        self.unload()
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.weights_path = folder
        self._cache_kw, self._keep_kw = _forward_kwargs(model)
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        train_ctx = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.n_ctx = opts.get("n_ctx") or min(train_ctx or DEFAULT_CTX, DEFAULT_CTX)
        out_emb = model.get_output_embeddings()
        self._n_vocab = self.n_vocab = int(getattr(out_emb, "out_features", 0) or config.vocab_size)
        self._eog = self._end_of_generation_ids()
        self._added = {int(i): str(t) for i, t in tokenizer.added_tokens_decoder.items()}
        kinds = _decoder_types(tokenizer)
        if "ByteLevel" in kinds:
            self._piece_style = "byte-level"
        elif kinds & {"Metaspace", "ByteFallback"}:
            self._piece_style = "sentencepiece"
        else:
            self._piece_style = "decode"
        return {
            "backend": self.name,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "n_ctx": self.n_ctx,
            "n_ctx_train": train_ctx,
            "n_vocab": self._n_vocab,
            "architecture": getattr(config, "model_type", None) or model.config.model_type,
            "has_chat_template": bool(self.chat_template()),
            "weights": str(folder),
            "options": {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
                        "n_threads": torch.get_num_threads(), "trust_remote_code": trust},
        }

    def _end_of_generation_ids(self) -> set[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        ids |= _flatten_ids(getattr(gen, "eos_token_id", None))
        ids |= _flatten_ids(getattr(self.model.config, "eos_token_id", None))
        ids |= _flatten_ids(getattr(self.tokenizer, "eos_token_id", None))
        return ids

    def _gguf_copy(self, path: Path, progress: Progress) -> Path:
        return gguf_safetensors_copy(path, progress)

    def unload(self) -> None:
        had = self.model is not None
        self.model = self.tokenizer = None
        self._cache = None
        self._cache_tokens = []
        self._pieces.clear()
        if had:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        enc = self.tokenizer(text, add_special_tokens=add_special, split_special_tokens=not parse_special)
        return list(enc["input_ids"])

    def token_piece(self, token_id: int) -> bytes:
        """The bytes this token adds to the text (may be part of a UTF-8 character)."""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._piece(token_id)
            self._pieces[token_id] = piece
        return piece

    def _piece(self, token_id: int) -> bytes:
        if token_id in self._added:
            return self._added[token_id].encode("utf-8")
        token = self.tokenizer.convert_ids_to_tokens(int(token_id))
        if token is None:
            return b""
        if self._piece_style == "byte-level":
            try:
                return bytes(_BYTE_DECODER[c] for c in token)
            except KeyError:
                return token.encode("utf-8")
        if self._piece_style == "sentencepiece":
            m = _BYTE_FALLBACK.match(token)
            if m:
                return bytes([int(m.group(1), 16)])
            return token.replace("▁", " ").encode("utf-8")
        return self.tokenizer.decode([int(token_id)], skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False).encode("utf-8")

    def detokenize(self, ids: list[int]) -> str:
        return b"".join(self.token_piece(i) for i in ids).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):
            template = template.get("default") or next(iter(template.values()), None)
        return template or None

    def special_tokens(self) -> dict[str, str]:
        # Exactly the map transformers passes to chat templates.
        return {k: str(v) for k, v in self.tokenizer.special_tokens_map.items() if v is not None}

    # -- sampling ----------------------------------------------------------------------------
    def check_params(self, params: SamplingParams) -> None:
        hint = "Use the llama.cpp backend (load a GGUF file with it) for this parameter, or remove it."
        if params.mirostat_mode != 0:
            raise UnsupportedParameter(
                f"The PyTorch backend cannot use the sampling parameter 'mirostat_mode' ({params.mirostat_mode}).",
                hint)
        if params.grammar:
            raise UnsupportedParameter("The PyTorch backend cannot use the sampling parameter 'grammar'.", hint)
        if params.json_schema:
            raise UnsupportedParameter("The PyTorch backend cannot use the sampling parameter 'json_schema'.", hint)
        bad = [t for t in params.logit_bias if not 0 <= t < self._n_vocab]
        if bad:
            raise InvalidRequest(
                f"logit_bias names token id {bad[0]}, but this model's ids run 0 to {self._n_vocab - 1}.")

    def sample(self, logits: torch.Tensor, params: SamplingParams, history: list[int],
               generator: torch.Generator) -> int:
        """Pick the next token from one position's raw logits (1-D, float32, CPU), llama.cpp style.

        Order as in the llama.cpp backend's chain: logit bias, penalties, then greedy (temperature
        0) or top-k, typical, top-p, min-p, temperature and a seeded draw.
        """
        x = logits.to(torch.float32).clone()
        if params.logit_bias:
            ids = torch.tensor(list(params.logit_bias), dtype=torch.long)
            x[ids] += torch.tensor(list(params.logit_bias.values()), dtype=torch.float32)
        penalised = params.repeat_penalty != 1 or params.frequency_penalty != 0 or params.presence_penalty != 0
        if params.repeat_last_n > 0 and history and penalised:
            ids, counts = torch.unique(torch.tensor(history[-params.repeat_last_n:], dtype=torch.long),
                                       return_counts=True)
            sel = x[ids]
            sel = torch.where(sel <= 0, sel * params.repeat_penalty, sel / params.repeat_penalty)
            x[ids] = sel - counts.to(torch.float32) * params.frequency_penalty - params.presence_penalty
        if params.temperature == 0:
            return int(torch.argmax(x))
        neg_inf = torch.tensor(float("-inf"))
        if 0 < params.top_k < x.numel():
            top = torch.topk(x, params.top_k)
            kept = torch.full_like(x, float("-inf"))
            kept[top.indices] = top.values
            x = kept
        if params.typical_p < 1.0:
            logp = torch.log_softmax(x, dim=0)
            p = logp.exp()
            finite = torch.isfinite(x)
            entropy = -(p[finite] * logp[finite]).sum()
            shifted = torch.where(finite, (-logp - entropy).abs(), torch.tensor(float("inf")))
            order = torch.argsort(shifted, stable=True)
            ps = p[order]
            before = torch.cumsum(ps, 0) - ps
            keep = torch.zeros_like(finite)
            keep[order] = before <= params.typical_p
            keep[order[0]] = True
            x = torch.where(keep & finite, x, neg_inf)
        if params.top_p < 1.0:
            order = torch.argsort(x, descending=True, stable=True)
            ps = torch.softmax(x[order], 0)
            before = torch.cumsum(ps, 0) - ps
            keep = torch.zeros(x.shape, dtype=torch.bool)
            keep[order] = before < params.top_p
            keep[order[0]] = True
            x = torch.where(keep, x, neg_inf)
        if params.min_p > 0:
            floor = torch.max(x) + float(np.log(params.min_p))
            x = torch.where(x >= floor, x, neg_inf)
        probs = torch.softmax(x / params.temperature, 0)
        return int(torch.multinomial(probs, 1, generator=generator))

    # -- generation --------------------------------------------------------------------------
    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Run ``ids`` through the model on top of the KV cache; the last position's logits (CPU float32)."""
        kwargs: dict[str, Any] = {self._cache_kw: self._cache, "use_cache": True}
        if self._keep_kw:
            kwargs[self._keep_kw] = 1
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], dtype=torch.long, device=self.device), **kwargs)
            logits = out.logits[0, -1].to(torch.float32).cpu()
        self._cache_tokens.extend(ids)
        return logits

    def _eval_prompt(self, tokens: list[int], cancel: threading.Event) -> torch.Tensor:
        """Fill the KV cache with the prompt (reusing the prefix shared with the last request)."""
        if not tokens:
            raise InvalidRequest("The prompt is empty.", "Type something for the model to continue.")
        keep = 0
        for a, b in zip(self._cache_tokens, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # always run the last prompt token for fresh logits
        if self._cache is not None and keep > 0:
            drop = len(self._cache_tokens) - keep
            try:
                if drop:
                    self._cache.crop(-drop)
                self._cache_tokens = self._cache_tokens[:keep]
            except (ValueError, RuntimeError, NotImplementedError, AttributeError):
                keep = 0  # a cache kind that cannot be cut back (sliding window): start over
        if self._cache is None or keep == 0:
            self._cache, self._cache_tokens = self._new_cache(), []
        logits = None
        for start in range(keep, len(tokens), PROMPT_CHUNK):
            if cancel.is_set():
                raise Cancelled
            logits = self._forward(tokens[start:start + PROMPT_CHUNK])
        return logits

    def stream(self, tokens: list[int], params: SamplingParams, n_alternatives: int,
               cancel: threading.Event, continuation: list[int] | None = None) -> Iterator[TokenStep]:
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        # As in the llama.cpp backend, the penalties look at the generated tokens (the sampler
        # there is only told about the tokens it picked), and at a chosen continuation's tokens.
        history: list[int] = list(continuation or [])
        try:
            with ReplyScorer() as score:  # _forward gives contiguous CPU float32 logits
                if continuation:
                    logits = self._eval_prompt(tokens + continuation[:-1], cancel)
                    forced = continuation[-1]
                    logprob, alts = score(logits.numpy(), forced, n_alternatives)
                    yield TokenStep(forced, self.token_piece(forced), logprob, alts, forced=True)
                    # A chosen end-of-generation token is shown, then the reply ends there.
                    if len(self._cache_tokens) >= self.n_ctx or forced in self._eog:
                        return
                    if cancel.is_set():
                        raise Cancelled
                    logits = self._forward([forced])
                else:
                    logits = self._eval_prompt(tokens, cancel)
                while True:
                    token = self.sample(logits, params, history, generator)
                    if token in self._eog:
                        return
                    logprob, alts = score(logits.numpy(), token, n_alternatives)
                    yield TokenStep(token, self.token_piece(token), logprob, alts)
                    history.append(token)
                    if len(self._cache_tokens) >= self.n_ctx:
                        return
                    if cancel.is_set():
                        raise Cancelled
                    logits = self._forward([token])
        except (Cancelled, GeneratorExit):
            raise
        except BaseException:
            # The cache may hold half a step: forget it rather than reuse it.
            self._cache, self._cache_tokens = None, []
            raise

    def next_logits(self, tokens: list[int], cancel: threading.Event) -> np.ndarray:
        """Raw logits of the position after ``tokens``, reusing the KV cache (step mode)."""
        try:
            return self._eval_prompt(tokens, cancel).numpy()
        except Cancelled:
            raise
        except BaseException:
            self._cache, self._cache_tokens = None, []
            raise

    def is_end_token(self, token_id: int) -> bool:
        return token_id in self._eog

    def next_token_logits(self, tokens: list[int]) -> np.ndarray:
        """Raw next-token logits after ``tokens`` (a fresh forward pass, no cache reuse)."""
        self._cache, self._cache_tokens = self._new_cache(), []
        try:
            return self._eval_prompt(tokens, threading.Event()).numpy()
        finally:
            self._cache, self._cache_tokens = None, []


# -- helpers ---------------------------------------------------------------------------------
def gguf_safetensors_copy(path: Path, progress: Progress | None = None) -> Path:
    """The safetensors copy of a GGUF file, made on first use (atomically: temp folder, then rename).

    Shared by the PyTorch backend and fine-tuning (which trains on the copy of a GGUF base model).
    """
    progress = progress or (lambda _stage, _fraction: None)
    final = gguf_copy_folder(path)
    st = path.stat()
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    if _is_complete_copy(final):
        return final

    _remove_stale_partials(root, final.name)
    progress(CONVERT_STAGE, 0.0)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import __version__ as tf_version

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=root))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
            progress(CONVERT_STAGE, 0.2)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                         local_files_only=True, **_dtype_kwarg(torch.float32))
        except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError, NotImplementedError) as exc:
            raise ModelLoadError(
                f"transformers could not read {path.name} ({type(exc).__name__}: {exc}).",
                "Its architecture or quantization may not be supported by transformers' GGUF reader: "
                "load the file with the llama.cpp backend instead.",
            ) from exc
        progress(CONVERT_STAGE, 0.7)
        # transformers marks a model read from GGUF as "quantized by GGUF"; the dequantized copy
        # is plain, and keeping the mark makes the Trainer and later loads refuse or mis-handle it.
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.hf_quantizer = None
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "desktop_llm_source.json").write_text(json.dumps({
            "gguf": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "transformers": tf_version, "copy_version": GGUF_COPY_VERSION,
        }, indent=1))
        del model
        gc.collect()
        if not any(tmp.glob("*.safetensors")):
            raise ModelLoadError(f"Converting {path.name} wrote no safetensors weights.",
                                 "Load the file with the llama.cpp backend instead.")
        progress(CONVERT_STAGE, 0.95)
        try:
            os.replace(tmp, final)
        except OSError:
            # Another engine finished the same copy first: use theirs.
            if not _is_complete_copy(final):
                raise
    except OSError as exc:
        raise ModelLoadError(f"Could not write the PyTorch copy of {path.name}: {exc}.",
                             f"Check there is free disk space in {root}.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(CONVERT_STAGE, 1.0)
    return final


def gguf_copy_folder(path: Path) -> Path:
    """Where the safetensors copy of a GGUF file lives; a new path when the file's path, size or mtime changes."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror or exc}.",
                             "Check the file exists and is readable.") from exc
    key_src = f"{GGUF_COPY_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    key = hashlib.sha256(key_src.encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80]
    return cache_dir() / GGUF_COPY_DIR / f"{stem}-{key}"


def _pick_device(requested: str | None) -> torch.device:
    want = (requested or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    available = (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if mps_ok else []) + ["cpu"]
    if want == "auto":
        return torch.device(available[0])
    try:
        device = torch.device(want)
    except RuntimeError as exc:
        raise InvalidRequest(f"'{requested}' is not a device name.",
                             f"Use auto or one of: {', '.join(available)}.") from exc
    ok = device.type == "cpu" or (device.type == "mps" and mps_ok) or (
        device.type == "cuda" and torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()))
    if not ok:
        raise InvalidRequest(f"The device '{requested}' is not available on this machine.",
                             f"Use auto or one of: {', '.join(available)}.")
    return device


def _pick_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    want = (requested or "auto").strip().lower()
    if want == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if want not in DTYPES:
        raise InvalidRequest(f"Load option 'dtype' must be auto, {', '.join(DTYPES)}; not '{requested}'.")
    return DTYPES[want]


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    from transformers import __version__ as tf_version

    major, minor = (int(x) for x in re.findall(r"\d+", tf_version)[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _check_hf_folder(folder: Path, name: str) -> None:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{name} has no config.json, so it is not a Hugging Face model folder.",
                             "Pick the folder that holds config.json and the *.safetensors weights.")
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{name} only has pickle weights ({', '.join(pickles[:3])}); the app does not load pickle files, "
            "because opening one can run any code hidden in it.",
            "Use a safetensors version of this model (most Hub repositories offer one), "
            "or a GGUF file with the llama.cpp backend.",
        )
    raise ModelLoadError(f"{name} has no *.safetensors weights.",
                         "The download may be incomplete; download the model again.")


def _load_error(name: str, exc: BaseException, trust: bool) -> ModelLoadError:
    text = str(exc)
    if "trust_remote_code" in text and not trust:
        return ModelLoadError(
            f"{name} needs Python code from its own folder to run (trust_remote_code).",
            "Turn on the load option trust_remote_code only if you trust the model's author: "
            "that code runs with your permissions.",
        )
    return ModelLoadError(f"PyTorch could not load {name}: {type(exc).__name__}: {text}",
                          "The files may be incomplete or from a newer transformers; download them again, "
                          "or use a GGUF file with the llama.cpp backend.")


def _is_complete_copy(folder: Path) -> bool:
    return folder.is_dir() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _remove_stale_partials(root: Path, name: str) -> None:
    now = time.time()
    for partial in root.glob(f".{name}.partial-*"):
        try:
            if now - partial.stat().st_mtime > STALE_PARTIAL_SECONDS:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:
            pass
