"""Command-line options shared by the commands: which model to load, and how to sample."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams

# SamplingParams fields set with a plain --flag VALUE, and their types.
_SIMPLE = {f.name: type(getattr(SamplingParams(), f.name)) for f in fields(SamplingParams)
           if f.name not in ("logit_bias", "grammar", "json_schema", "seed", "stop")}


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("-m", "--model", help="model id, name or path (default: the bundled SmolLM2)")
    g.add_argument("--backend", choices=["auto", "llamacpp", "torch"], default="auto",
                   help="inference backend (auto: llama.cpp for GGUF, PyTorch for model folders)")
    g.add_argument("--ctx", type=int, dest="n_ctx", help="context size in tokens")
    g.add_argument("--gpu-layers", type=int, dest="n_gpu_layers", help="layers to offload to the GPU (llama.cpp)")
    g.add_argument("--threads", type=int, dest="n_threads", help="CPU threads")
    g.add_argument("--flash-attn", action="store_true", default=None, help="flash attention (llama.cpp)")
    g.add_argument("--no-mmap", action="store_false", dest="use_mmap", default=None,
                   help="read the whole file into memory instead of memory-mapping it (llama.cpp)")
    g.add_argument("--device", help="cuda, mps or cpu (PyTorch backend; default: the best available)")
    g.add_argument("--dtype", help="auto, float32, float16 or bfloat16 (PyTorch backend)")


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    names = ("n_ctx", "n_gpu_layers", "n_threads", "flash_attn", "use_mmap", "device", "dtype")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("sampling")
    for name, kind in _SIMPLE.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, metavar=kind.__name__.upper())
    g.add_argument("--seed", type=int, help="random seed: the same seed and settings give the same text")
    g.add_argument("--stop", action="append", default=None, help="stop sequence (repeatable)")
    g.add_argument("--logit-bias", action="append", default=None, metavar="TOKEN_ID=BIAS",
                   help="add BIAS to a token's logit (repeatable); -100 bans the token")
    g.add_argument("--grammar", type=Path, metavar="FILE", help="GBNF grammar file that the reply must follow")
    g.add_argument("--json-schema", metavar="FILE_OR_JSON", help="JSON schema that the reply must follow")


def sampling_params(args: argparse.Namespace, base: SamplingParams | None = None) -> SamplingParams:
    data = (base or SamplingParams()).to_dict()
    for name in _SIMPLE:
        if getattr(args, name, None) is not None:
            data[name] = getattr(args, name)
    if args.seed is not None:
        data["seed"] = args.seed
    if args.stop:
        data["stop"] = args.stop
    if args.logit_bias:
        data["logit_bias"] = dict(_parse_bias(item) for item in args.logit_bias)
    if args.grammar:
        data["grammar"] = _read(args.grammar, "grammar")
    if args.json_schema:
        data["json_schema"] = _schema(args.json_schema)
    return SamplingParams.from_dict(data)


def _parse_bias(item: str) -> tuple[str, float]:
    token, sep, bias = item.partition("=")
    try:
        return str(int(token)), float(bias)
    except ValueError:
        raise InvalidRequest(f"--logit-bias {item!r} is not TOKEN_ID=BIAS.", "Example: --logit-bias 42=-100") from None


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"Cannot read the {what} file {path}: {exc.strerror}.") from exc


def _schema(value: str) -> dict[str, Any]:
    text = value if value.lstrip().startswith("{") else _read(Path(value), "JSON schema")
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"The JSON schema is not valid JSON (line {exc.lineno}: {exc.msg}).") from exc
    if not isinstance(schema, dict):
        raise InvalidRequest("A JSON schema must be a JSON object.")
    return schema


def parse_param_value(name: str, raw: str) -> Any:
    """Turn ``/set NAME VALUE`` text into a typed value for SamplingParams."""
    if name in _SIMPLE:
        kind = _SIMPLE[name]
        try:
            return kind(raw)
        except ValueError:
            raise InvalidRequest(f"{name} needs a {kind.__name__}, not {raw!r}.") from None
    if name == "seed":
        return None if raw.lower() in ("none", "random", "off") else int(raw)
    if name == "stop":
        return [s for s in raw.split("|") if s] if raw.lower() != "none" else []
    known = ", ".join([*_SIMPLE, "seed", "stop"])
    raise InvalidRequest(f"No parameter {name!r} can be set here.", f"Parameters: {known}.")
