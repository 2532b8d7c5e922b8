"""Merge a LoRA adapter into its base model: a plain safetensors folder with tokenizer and chat template."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from desktop_llm.core.errors import EngineError, InvalidRequest, ModelLoadError

Progress = Callable[[str, float], None]

MERGE_STAGE = "merging adapter"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Apply the LoRA adapter in ``adapter_dir`` to the model in ``base_dir`` and save the result to ``out_dir``.

    The merge is computed in float32 on the CPU (a bfloat16 merge would round the small LoRA update away
    in part), then saved in the base model's own dtype so the merged folder is the size of the base.
    The folder is built under a temporary name and renamed, so ``out_dir`` is either absent or complete.
    """
    progress = progress or (lambda _stage, _fraction: None)
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    _check_adapter(adapter_dir)
    save_dtype = _config_dtype(base_dir)
    progress(MERGE_STAGE, 0.0)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True,
                                                    **_dtype_kwarg(torch.float32))
    except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError) as exc:
        raise ModelLoadError(f"Could not load the base model in {base_dir}: {exc}.",
                             "Choose the model the adapter was trained on.") from exc
    progress(MERGE_STAGE, 0.3)
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
        # safe_merge checks the merged weights for NaN/inf before replacing the base weights.
        merged = model.merge_and_unload(safe_merge=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise InvalidRequest(f"The adapter in {adapter_dir.name} does not fit the base model in {base_dir.name}: {exc}",
                             "Merge it into the model it was trained on.") from exc
    merged = merged.to(save_dtype)
    progress(MERGE_STAGE, 0.6)

    tokenizer_src = adapter_dir if any((adapter_dir / f).is_file() for f in _TOKENIZER_FILES) else base_dir
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_src), local_files_only=True)
        if not getattr(tokenizer, "chat_template", None) and tokenizer_src != base_dir:
            # A tokenizer saved without its template still chats the way the base model does.
            tokenizer.chat_template = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True).chat_template
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"Could not load the tokenizer in {tokenizer_src}: {exc}.") from exc

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if not any(tmp.glob("*.safetensors")):
            raise EngineError(f"Saving the merged model wrote no safetensors weights to {tmp}.")
        progress(MERGE_STAGE, 0.95)
        _replace_dir(tmp, out_dir)
    except OSError as exc:
        raise EngineError(f"Could not write the merged model to {out_dir}: {exc}.",
                          f"Check there is free disk space in {out_dir.parent}.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(MERGE_STAGE, 1.0)
    return out_dir


def _check_adapter(adapter_dir: Path) -> None:
    config = adapter_dir / "adapter_config.json"
    if not config.is_file():
        raise InvalidRequest(f"{adapter_dir} holds no adapter (adapter_config.json is missing).",
                             "Choose a folder saved by fine-tuning.")
    try:
        peft_type = json.loads(config.read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read {config}: {exc}.") from exc
    if str(peft_type).upper() != "LORA":
        raise InvalidRequest(f"Only LoRA adapters can be merged; {adapter_dir.name} is a {peft_type} adapter.")


def _config_dtype(model_dir: Path) -> torch.dtype:
    try:
        config: dict[str, Any] = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{model_dir} has no config.json.", "Choose a Hugging Face model folder.") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read {model_dir / 'config.json'}: {exc}.") from exc
    # transformers 5 writes "dtype", earlier versions "torch_dtype"; neither means float32.
    return _DTYPES.get(str(config.get("dtype") or config.get("torch_dtype") or "float32"), torch.float32)


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, Any]:
    # transformers renamed torch_dtype= to dtype= in 4.56.
    from transformers import __version__ as tf_version

    major, minor = (int(x) for x in re.findall(r"\d+", tf_version)[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first and removed only afterwards."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.replace(final, old / final.name)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old / final.name, final)  # put the previous export back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
