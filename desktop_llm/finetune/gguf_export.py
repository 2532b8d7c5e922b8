"""Export a Hugging Face causal-LM folder (safetensors) to one GGUF file that llama.cpp loads.

Follows llama.cpp's own converter (convert_hf_to_gguf.py: TextModel, LlamaModel, Qwen2Model) and its
gguf-py names, for the architectures fine-tuning produces: llama, mistral (written as llama, as
llama.cpp does) and qwen2. Tensors are read and written one at a time, so memory stays near the
size of the largest tensor rather than the model.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open

from desktop_llm.core.errors import EngineError, InvalidRequest, ModelLoadError

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
OUT_TYPES = ("F16", "Q8_0")
EXPORT_STAGE = "writing GGUF"

# Mistral checkpoints are Llama-shaped; llama.cpp converts MistralForCausalLM with LlamaModel too.
_GGUF_ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "mistral": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
_FILE_TYPE = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
_QTYPE = {"F16": gguf.GGMLQuantizationType.F16, "Q8_0": gguf.GGMLQuantizationType.Q8_0}
_SUPPORTED_TEXT = "llama, mistral and qwen2"

# The string llama.cpp's converter tokenizes to identify a BPE pre-tokenizer (get_vocab_base_pre): the
# sha256 of str(token ids) names the regex llama.cpp must split text with before BPE.
_CHECK_TEXT = (
    '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f '
    '(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 '
    '3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 '
    '?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 '
    '\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve '
    'been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL'
)
# A subset of the converter's table: tokenizers of models with the architectures above.
KNOWN_PRE_TOKENIZERS = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3-8B
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",  # Falcon3 is llama-shaped
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3": "pixtral",
    "d5f1dd6f980fec569fb218a81a7658ac45fc56b38c5a0adeb1c232fbe04ef5ec": "seed-coder",
}


def export_gguf(model_dir: Path, out_path: Path, out_type: str = "F16", progress: Progress | None = None, *,
                name: str | None = None) -> Path:
    """Write ``model_dir`` (a Hugging Face causal-LM folder) as one GGUF file of ``out_type`` F16 or Q8_0.

    The file is written under a temporary name next to ``out_path`` and renamed when complete, so a
    crash or a full disk never leaves a truncated GGUF where a loader would pick it up.
    """
    progress = progress or (lambda _stage, _fraction: None)
    model_dir, out_path = Path(model_dir), Path(out_path)
    if out_type not in OUT_TYPES:
        raise InvalidRequest(f"GGUF export type {out_type!r} is not supported.",
                             f"Choose one of {', '.join(OUT_TYPES)}.")
    hp = read_config(model_dir)
    model_type = check_architecture(hp)
    arch = _GGUF_ARCH[model_type]
    progress(EXPORT_STAGE, 0.0)

    plan = _tensor_plan(model_dir, hp, arch, out_type)
    writer = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or model_dir.name)
    _add_hparams(writer, hp, arch, out_type)
    _add_vocab(writer, model_dir, hp)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for item in plan:
        writer.add_tensor_info(item.name, item.byte_shape, item.np_dtype, item.nbytes, raw_dtype=item.qtype)
    progress(EXPORT_STAGE, 0.05)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.partial-", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    total = sum(item.nbytes for item in plan) or 1
    done = 0
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for item in plan:
            data = _convert(item)
            if data.nbytes != item.nbytes:  # the header already promised this size
                raise EngineError(f"Tensor {item.name} came out as {data.nbytes} bytes, not {item.nbytes}.")
            writer.write_tensor_data(data)
            done += item.nbytes
            progress(EXPORT_STAGE, 0.05 + 0.95 * done / total)
        writer.close()
        os.replace(tmp, out_path)
    except OSError as exc:
        raise EngineError(f"Could not write {out_path.name}: {exc}.",
                          f"Check there is free disk space in {out_path.parent}.") from exc
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    progress(EXPORT_STAGE, 1.0)
    return out_path


# -- configuration -----------------------------------------------------------------------------------

def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{model_dir} has no config.json.",
                             "Choose a Hugging Face model folder (config.json, safetensors weights, tokenizer).",
                             ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read {path}: {exc}.") from exc


def check_architecture(hp: dict[str, Any]) -> str:
    """The config's model_type if GGUF export supports it; otherwise a user-facing error naming it."""
    model_type = hp.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        named = f"'{model_type}'" if model_type else "an unknown"
        raise InvalidRequest(f"GGUF export does not support {named} models.",
                             f"Supported architectures: {_SUPPORTED_TEXT}. "
                             "Export the merged safetensors folder instead.")
    return str(model_type)


def _need(hp: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if hp.get(key) is not None:
            return hp[key]
    raise ModelLoadError(f"config.json lacks {keys[0]!r}, needed for the GGUF header.")


def _rope(hp: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """(rope theta, scaling settings): transformers 5 writes ``rope_parameters``, older ones ``rope_theta``
    plus ``rope_scaling``."""
    rope = {**(hp.get("rope_scaling") or {}), **(hp.get("rope_parameters") or {})}
    theta = hp.get("rope_theta", rope.get("rope_theta"))
    return (float(theta) if theta is not None else None), rope


def _head_dim(hp: dict[str, Any]) -> int:
    return int(hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"])


def _add_hparams(writer: gguf.GGUFWriter, hp: dict[str, Any], arch: gguf.MODEL_ARCH, out_type: str) -> None:
    n_head = int(_need(hp, "num_attention_heads"))
    writer.add_context_length(int(_need(hp, "max_position_embeddings")))
    writer.add_embedding_length(int(_need(hp, "hidden_size")))
    writer.add_block_count(int(_need(hp, "num_hidden_layers")))
    writer.add_feed_forward_length(int(_need(hp, "intermediate_size")))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(hp.get("num_key_value_heads") or n_head))
    theta, rope = _rope(hp)
    if theta is not None:
        writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(float(_need(hp, "rms_norm_eps")))
    if hp.get("head_dim") is not None:
        writer.add_key_length(int(hp["head_dim"]))
        writer.add_value_length(int(hp["head_dim"]))
    writer.add_file_type(_FILE_TYPE[out_type])
    writer.add_vocab_size(int(_need(hp, "vocab_size")))
    writer.add_rope_dimension_count(_head_dim(hp))

    rope_type = rope.get("rope_type", rope.get("type")) or "default"
    if rope_type == "default":
        return
    if rope_type == "linear" and "factor" in rope:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope_type == "yarn" and "factor" in rope:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        orig = rope.get("original_max_position_embeddings") or hp.get("original_max_position_embeddings")
        if orig:
            writer.add_rope_scaling_orig_ctx_len(int(orig))
    elif rope_type == "llama3" and arch == gguf.MODEL_ARCH.LLAMA:
        pass  # written as the rope_freqs tensor (see _llama3_rope_factors), as llama.cpp's converter does
    else:
        raise InvalidRequest(f"GGUF export does not support the '{rope_type}' rope scaling of this model.",
                             "Supported: none, linear, yarn, and llama3 (Llama models).")


def _llama3_rope_factors(hp: dict[str, Any]) -> torch.Tensor:
    """Per-frequency divisors of Llama 3.1-style rope scaling (LlamaModel.generate_extra_tensors)."""
    theta, rope = _rope(hp)
    base = theta if theta is not None else 10000.0
    dim = _head_dim(hp)
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = float(rope.get("factor", 8.0))
    low_freq_factor = float(rope.get("low_freq_factor", 1.0))
    high_freq_factor = float(rope.get("high_freq_factor", 4.0))
    old_context_len = float(rope.get("original_max_position_embeddings", 8192))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    factors: list[float] = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


# -- tensors ---------------------------------------------------------------------------------------------

@dataclass
class _Tensor:
    name: str  # the GGUF name
    shape: tuple[int, ...]  # row-major (PyTorch) shape
    qtype: gguf.GGMLQuantizationType
    load: Callable[[], torch.Tensor]

    @property
    def byte_shape(self) -> tuple[int, ...]:
        if self.qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            return self.shape
        return tuple(gguf.quant_shape_to_byte_shape(self.shape, self.qtype))

    @property
    def np_dtype(self) -> np.dtype:
        # add_tensor_info reads F32/F16 from the numpy dtype and a quantized type from raw_dtype + uint8.
        return {gguf.GGMLQuantizationType.F32: np.dtype(np.float32),
                gguf.GGMLQuantizationType.F16: np.dtype(np.float16)}.get(self.qtype, np.dtype(np.uint8))

    @property
    def nbytes(self) -> int:
        block, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape) // block * type_size


def permute_qk(weights: torch.Tensor, n_head: int, n_head_kv: int | None) -> torch.Tensor:
    """LlamaModel.permute: HF Llama rotates the two halves of each head (rotate_half), llama.cpp's LLAMA
    rope rotates adjacent pairs, so q/k rows are reordered to make both compute the same attention."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
    else:
        files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        hint = ("It holds PyTorch .bin weights: save it with safetensors first." if any(model_dir.glob("*.bin"))
                else "Choose a folder saved with save_pretrained (safetensors weights).")
        raise ModelLoadError(f"{model_dir} has no safetensors weights.", hint)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(f"{model_dir} lacks weight files {', '.join(missing)}.",
                             "Copy or download the folder again.")
    return files


def _qtype_for(gguf_name: str, shape: tuple[int, ...], out_type: str) -> gguf.GGMLQuantizationType:
    # As llama.cpp's converter: 1-D tensors, norms and anything but a weight (biases) stay F32, since
    # most of llama.cpp only handles F32 there.
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    qtype = _QTYPE[out_type]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        log.warning("%s: row length %d is not a multiple of %d, writing it as F16", gguf_name, shape[-1], block)
        return gguf.GGMLQuantizationType.F16
    return qtype


def _tensor_plan(model_dir: Path, hp: dict[str, Any], arch: gguf.MODEL_ARCH, out_type: str) -> list[_Tensor]:
    n_blocks = int(_need(hp, "num_hidden_layers"))
    n_head = int(_need(hp, "num_attention_heads"))
    n_head_kv = hp.get("num_key_value_heads")
    tied = bool(hp.get("tie_word_embeddings", False))
    tensor_map = gguf.get_tensor_name_map(arch, n_blocks)
    plan: list[_Tensor] = []
    for path in _weight_files(model_dir):
        try:
            with safe_open(str(path), framework="pt") as f:
                shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
        except (OSError, ValueError, RuntimeError) as exc:  # safetensors raises SafetensorError (a RuntimeError)
            raise ModelLoadError(f"Could not read {path.name}: {exc}.", "The file may be truncated: save it again.") \
                from exc
        for hf_name, shape in shapes.items():
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue  # recomputed by llama.cpp
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp reuses token_embd when output.weight is absent
            gguf_name = tensor_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise InvalidRequest(f"GGUF export cannot map the tensor {hf_name!r} of this model.",
                                     f"Supported: plain {_SUPPORTED_TEXT} causal language models.")
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None
            # Qwen2 uses NeoX-style rope in llama.cpp, like HF: only llama-arch q/k need reordering.
            if arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                transform = functools.partial(permute_qk, n_head=n_head, n_head_kv=n_head)
            elif arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                transform = functools.partial(permute_qk, n_head=n_head, n_head_kv=n_head_kv)
            plan.append(_Tensor(gguf_name, shape, _qtype_for(gguf_name, shape, out_type),
                                _loader(path, hf_name, transform)))
    _, rope = _rope(hp)
    if arch == gguf.MODEL_ARCH.LLAMA and rope.get("rope_type", rope.get("type")) == "llama3":
        factors = _llama3_rope_factors(hp)
        plan.append(_Tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", tuple(factors.shape),
                            gguf.GGMLQuantizationType.F32, lambda: factors))
    names = [t.name for t in plan]
    if len(set(names)) != len(names):
        raise ModelLoadError(f"{model_dir} holds some weights twice.", "Save the model again with save_pretrained.")
    plan.sort(key=_order)
    return plan


def _order(item: _Tensor) -> tuple[int, int, str]:
    # token_embd first, blocks in order, output tensors last: the order llama.cpp's converter writes.
    match = re.match(r"blk\.(\d+)\.", item.name)
    if match:
        return (1, int(match.group(1)), item.name)
    return (0 if item.name.startswith("token_embd") else 2, 0, item.name)


def _loader(path: Path, hf_name: str, transform: Callable[[torch.Tensor], torch.Tensor] | None
            ) -> Callable[[], torch.Tensor]:
    def load() -> torch.Tensor:
        with safe_open(str(path), framework="pt") as f:
            tensor = f.get_tensor(hf_name)
        return transform(tensor) if transform is not None else tensor
    return load


def _convert(item: _Tensor) -> np.ndarray:
    # float32 first: numpy has no bfloat16, and quantizing from float32 avoids a double rounding.
    data = item.load().to(torch.float32).contiguous().numpy()
    if tuple(data.shape) != item.shape:
        raise EngineError(f"Tensor {item.name} changed shape while exporting.")
    if item.qtype == gguf.GGMLQuantizationType.F32:
        return data
    if item.qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, item.qtype)


# -- tokenizer -------------------------------------------------------------------------------------------

def _add_vocab(writer: gguf.GGUFWriter, model_dir: Path, hp: dict[str, Any]) -> None:
    """Tokenizer metadata, choosing like llama.cpp's converter: SentencePiece (tokenizer.model), else
    GPT-2-style byte-level BPE (tokenizer.json)."""
    vocab_size = int(_need(hp, "vocab_size"))
    kind = _tokenizer_kind(model_dir)
    tokenizer = _load_hf_tokenizer(model_dir, required=kind == "gpt2")
    if kind == "spm":
        tokens, scores, types = _spm_vocab(model_dir, vocab_size)
        special = gguf.SpecialVocab(model_dir, n_vocab=len(tokens))
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
    else:
        tokens, types, pre = _bpe_vocab(tokenizer, model_dir, vocab_size)
        scores = None
        special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
        if not special.merges:
            raise InvalidRequest(f"The tokenizer in {model_dir.name} has no BPE merges.",
                                 "Save the tokenizer with save_pretrained (tokenizer.json) and export again.")
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if scores is not None:
        writer.add_token_scores(scores)
    writer.add_token_types(types)
    if tokenizer is not None:
        _match_hf_special_tokens(special, tokenizer)
    special.add_to_gguf(writer, quiet=True)


def _tokenizer_kind(model_dir: Path) -> str:
    has_spm = (model_dir / "tokenizer.model").is_file()
    if has_spm:
        try:
            import sentencepiece  # noqa: F401
            return "spm"
        except ImportError:
            pass
    tokenizer_json = model_dir / "tokenizer.json"
    model: dict[str, Any] = {}
    if tokenizer_json.is_file():
        try:
            tj = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"Could not read {tokenizer_json}: {exc}.") from exc
        model = tj.get("model") or {}
        # byte_fallback marks SentencePiece pieces stored as BPE (Llama 2, Mistral 7B): llama.cpp needs
        # those as a "llama" vocabulary with scores, which come from tokenizer.model.
        if model.get("type") == "BPE" and not model.get("byte_fallback", False):
            return "gpt2"
    if has_spm:
        raise InvalidRequest(f"{model_dir.name} uses a SentencePiece tokenizer (tokenizer.model) and exporting it "
                             "to GGUF needs the 'sentencepiece' package.",
                             "Install it (pip install sentencepiece) and export again.")
    found = f"a '{model.get('type')}' tokenizer" if model else "no tokenizer.json"
    raise InvalidRequest(f"GGUF export does not support the tokenizer of {model_dir.name} ({found}).",
                         "Supported: byte-level BPE (GPT-2 style, tokenizer.json) and SentencePiece (Llama style).")


def _does_token_look_special(token: str) -> bool:
    # Added tokens some models forget to mark special (TextModel.does_token_look_special).
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def _load_hf_tokenizer(model_dir: Path, required: bool = True) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        if not required:  # a SentencePiece folder transformers cannot read: keep SpecialVocab's BOS/EOS flags
            log.warning("transformers could not load the tokenizer in %s: %s", model_dir, exc)
            return None
        raise ModelLoadError(f"transformers could not load the tokenizer in {model_dir.name}: {exc}.",
                             "Save the tokenizer with save_pretrained next to the weights.") from exc


def pre_tokenizer_name(tokenizer: Any) -> str:
    """llama.cpp's name for this BPE tokenizer's pre-tokenizer, identified as its converter does."""
    digest = sha256(str(tokenizer.encode(_CHECK_TEXT)).encode()).hexdigest()
    name = KNOWN_PRE_TOKENIZERS.get(digest)
    if name is None:
        # llama.cpp's converter refuses here; a desktop export should still produce a file, whose text
        # splitting may differ slightly from the original on unusual input (digits, punctuation runs).
        log.warning("BPE pre-tokenizer not recognized (hash %s); writing 'default'", digest)
        return "default"
    return name


def _bpe_vocab(tokenizer: Any, model_dir: Path, vocab_size: int) -> tuple[list[str], list[int], str]:
    """TextModel.get_vocab_base: tokens by id, their types, and the pre-tokenizer name."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    if vocab and max(vocab.values()) >= vocab_size:
        raise InvalidRequest(f"The tokenizer of {model_dir.name} has ids beyond the model's {vocab_size} embeddings.",
                             "Resize the model's embeddings to the tokenizer and save it again.")
    pre = pre_tokenizer_name(tokenizer)
    reverse = {i: tok for tok, i in vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:  # more embedding rows than tokens: llama.cpp needs an entry for each
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        token = reverse[i]
        if token in added:
            info = decoder.get(i)
            # llama.cpp expects control and user-defined tokens pre-normalized.
            if info is not None and not info.normalized:
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            if (info is not None and info.special) or _does_token_look_special(token):
                types.append(int(gguf.TokenType.CONTROL))
            else:
                token = token.replace("\u2581", " ")  # pre-normalize user-defined spaces (Gemma)
                types.append(int(gguf.TokenType.USER_DEFINED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
        tokens.append(token)
    return tokens, types, pre


def _spm_vocab(model_dir: Path, vocab_size: int) -> tuple[list[bytes], list[float], list[int]]:
    """TextModel._create_vocab_sentencepiece."""
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(model_dir / "tokenizer.model"))
    vocab_size = max(vocab_size, sp.vocab_size())
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for i in range(sp.vocab_size()):
        toktype = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            toktype = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            toktype = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            toktype = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            toktype = gguf.TokenType.BYTE
        tokens[i] = sp.IdToPiece(i).encode("utf-8")
        scores[i] = sp.GetScore(i)
        types[i] = int(toktype)
    added_file = model_dir / "added_tokens.json"
    if added_file.is_file():
        for text, i in json.loads(added_file.read_text(encoding="utf-8")).items():
            if i < vocab_size:
                tokens[i], scores[i], types[i] = text.encode("utf-8"), -1000.0, int(gguf.TokenType.USER_DEFINED)
    config_file = model_dir / "tokenizer_config.json"
    if config_file.is_file():
        decoder = json.loads(config_file.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
        for key, data in decoder.items():
            i, text = int(key), str(data["content"])
            if i >= vocab_size:
                continue
            if data.get("special") or _does_token_look_special(text):
                types[i] = int(gguf.TokenType.CONTROL)
            else:
                text = text.replace("\u2581", " ")
                types[i] = int(gguf.TokenType.USER_DEFINED)
            tokens[i], scores[i] = text.encode("utf-8"), -1000.0
    return tokens, scores, types


def _match_hf_special_tokens(special: gguf.SpecialVocab, tokenizer: Any) -> None:
    """Make llama.cpp add BOS/EOS exactly when the HF tokenizer does.

    Training saw the HF tokenizer's ids; SpecialVocab only knows flags spelled out in tokenizer_config or
    a simple post-processor, and llama.cpp's own default may differ (its converter hard-codes
    add_bos_token=False for SmolLM-sized vocabularies for this reason). So watch what the tokenizer does.
    """
    for typ in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{typ}_token_id", None)
        if isinstance(token_id, int):
            special._set_special_token(typ, token_id)
    plain = tokenizer.encode("Hello", add_special_tokens=False)
    full = tokenizer.encode("Hello", add_special_tokens=True)
    start = full.index(plain[0]) if plain and plain[0] in full else 0
    prefix, suffix = full[:start], full[start + len(plain):]
    special.add_special_token["bos"] = bool(prefix) and prefix == [special.special_token_ids.get("bos")]
    special.add_special_token["eos"] = bool(suffix) and suffix == [special.special_token_ids.get("eos")]
    if (prefix and not special.add_special_token["bos"]) or (suffix and not special.add_special_token["eos"]):
        log.warning("the tokenizer adds %s around text, which llama.cpp cannot reproduce", prefix + suffix)
