"""GGUF quantization names, split files, and the choices a model repository offers.

A GGUF repository on the Hub usually holds one file per quantization ("model-Q4_K_M.gguf"), large
ones split in parts ("Q8_0/model-Q8_0-00001-of-00003.gguf"), and helper files that are not a model
to chat with (vision projectors, importance matrices). ``group_quants`` turns such a listing into
one ``QuantChoice`` per downloadable model, with a plain-words description for non-experts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from desktop_llm.core.repo_files import RepoFile

# A quantization name is a token of its own in the path: bounded by a separator (- . _ /) or the
# ends, never by a letter or digit ("Qwen2" and the "00001" of split names are not quantizations).
# Its suffix parts are restricted to the ones llama.cpp and the big uploaders use, so a greedy match
# cannot swallow the next word of the file name.
_SUFFIX = r"(?:_(?:XXS|XS|XL|NL|K|S|M|L|0|1|4|8))"
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(I?Q[1-8]" + _SUFFIX + r"*|TQ[12]_0|MXFP4(?:_MOE)?|BF16|FP16|FP32|F16|F32)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"^(?P<base>.*?)-(?P<part>\d{3,6})-of-(?P<total>\d{3,6})(?P<ext>\.[A-Za-z0-9]+)?$")
_ALIASES = {"FP16": "F16", "FP32": "F32"}

# Typical bits per weight as llama.cpp's quantize tool reports them for a Llama-class model (the mix
# of tensor types, and so the average, varies a little between architectures). "_L"/"_XL" variants
# of the uploaders (bartowski, unsloth "UD") keep embeddings/output at higher precision: slightly more.
_BPW: dict[str, float] = {
    "IQ1_S": 1.56, "IQ1_M": 1.75, "TQ1_0": 1.69, "TQ2_0": 2.06,
    "IQ2_XXS": 2.06, "IQ2_XS": 2.31, "IQ2_S": 2.50, "IQ2_M": 2.70,
    "Q2_K_S": 2.56, "Q2_K": 2.63, "Q2_K_L": 2.90, "Q2_K_XL": 2.95,
    "IQ3_XXS": 3.06, "IQ3_XS": 3.30, "IQ3_S": 3.44, "IQ3_M": 3.66,
    "Q3_K_S": 3.50, "Q3_K_M": 3.91, "Q3_K_L": 4.27, "Q3_K_XL": 4.40,
    "IQ4_XS": 4.25, "IQ4_NL": 4.50, "MXFP4": 4.25, "MXFP4_MOE": 4.25,
    "Q4_0": 4.55, "Q4_1": 5.00, "Q4_K_S": 4.58, "Q4_K": 4.89, "Q4_K_M": 4.89, "Q4_K_L": 5.10, "Q4_K_XL": 5.10,
    "Q4_0_4_4": 4.55, "Q4_0_4_8": 4.55, "Q4_0_8_8": 4.55, "IQ4_NL_4_4": 4.50,
    "Q5_0": 5.54, "Q5_1": 6.04, "Q5_K_S": 5.54, "Q5_K": 5.70, "Q5_K_M": 5.70, "Q5_K_L": 5.90, "Q5_K_XL": 5.90,
    "Q6_K": 6.56, "Q6_K_L": 6.70, "Q6_K_XL": 7.00,
    "Q8_0": 8.50, "Q8_K_XL": 9.00,
    "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}

# Plain words by bits per weight: (upper bound, description), first match wins.
_DESCRIPTIONS: tuple[tuple[float, str], ...] = (
    (3.0, "smallest, much lower quality"),
    (4.0, "small, lower quality"),
    (5.2, "balanced, recommended for most"),
    (6.0, "good quality, a bit larger"),
    (7.5, "high quality"),
    (12.0, "near-lossless"),
    (float("inf"), "full precision (large)"),
)


def quant_name(path: str) -> str | None:
    """The quantization named in a GGUF file path ("Q4_K_M", "IQ2_XS", "F16"...), or None.

    The file name wins over folder names; within a name the last match wins, since uploaders put the
    quantization at the end ("Llama-3-8B-Q4_K_M"). Split suffixes are removed first.
    """
    split = split_part(path)
    if split is not None:
        path = split[0]
    for component in reversed(path.replace("\\", "/").split("/")):
        matches = _QUANT_RE.findall(component)
        if matches:
            name = matches[-1].upper()
            return _ALIASES.get(name, name)
    return None


def split_part(path: str) -> tuple[str, int, int] | None:
    """For "x-00002-of-00003.gguf": ("x.gguf", 2, 3). None for a file that is not one part of a split set."""
    m = _SPLIT_RE.match(path)
    if m is None:
        return None
    part, total = int(m["part"]), int(m["total"])
    if not 1 <= part <= total:
        return None
    return m["base"] + (m["ext"] or ""), part, total


def bits_per_weight(quant: str) -> float | None:
    """Typical bits per weight of a quantization name (case-insensitive), or None when not known."""
    name = quant.upper()
    return _BPW.get(_ALIASES.get(name, name))


def describe_bits(bpw: float | None) -> str:
    """A few plain words on size and quality for a bits-per-weight figure."""
    if bpw is None:
        return "unknown quantization"
    return next(text for bound, text in _DESCRIPTIONS if bpw < bound)


@dataclass(frozen=True)
class QuantChoice:
    """One model file (or split set) a user can download."""

    name: str  # quant_name, or the file stem when none is known; disambiguated when two share it
    files: tuple[RepoFile, ...]  # every part present, in part order (one file when not split)
    size: int  # sum of the known sizes
    bits_per_weight: float | None
    description: str  # plain words for a non-expert ("balanced, recommended for most")
    complete: bool  # False when a split set misses parts
    missing: tuple[int, ...] = ()  # the missing part numbers

    @property
    def split(self) -> bool:
        # A "-00001-of-00001" file is one whole file, not a split set.
        parts = [split_part(f.path) for f in self.files]
        return len(self.files) > 1 or any(p is not None and p[2] > 1 for p in parts)

    @property
    def size_known(self) -> bool:
        """True when the Hub gave the size of every part (else ``size`` undercounts)."""
        return all(f.size is not None for f in self.files)


def _is_model_gguf(file: RepoFile) -> bool:
    # Vision projectors and importance matrices are GGUF files too, but nobody chats with them.
    lower = file.name.lower()
    return lower.endswith(".gguf") and "mmproj" not in lower and "imatrix" not in lower


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[:-5] if name.lower().endswith(".gguf") else name


def _without_quant(path: str) -> str:
    """The file stem with its quantization token removed: what tells "a-Q4_K_M" from "b-Q4_K_M"."""
    return _QUANT_RE.sub("", _stem(path)).strip("-._ ")


def group_quants(files: Iterable[RepoFile]) -> list[QuantChoice]:
    """One choice per GGUF model in a repository listing, split parts grouped; smallest first, unknown sizes last."""
    groups: dict[str, dict[int, RepoFile]] = {}
    totals: dict[str, int] = {}
    for f in files:
        if not _is_model_gguf(f):
            continue
        split = split_part(f.path)
        base, part, total = split if split else (f.path, 1, 1)
        groups.setdefault(base, {}).setdefault(part, f)
        totals[base] = max(totals.get(base, 1), total)

    drafts = []
    for base, parts in groups.items():
        ordered = tuple(parts[n] for n in sorted(parts))
        missing = tuple(n for n in range(1, totals[base] + 1) if n not in parts)
        quant = quant_name(base)
        bpw = bits_per_weight(quant) if quant else None
        drafts.append((base, quant or _stem(base), ordered, missing, bpw))

    # Two files with the same quantization (other variants of the model in one repo) need telling apart.
    counts: dict[str, int] = {}
    for _base, name, *_ in drafts:
        counts[name] = counts.get(name, 0) + 1
    labels = {}
    for base, name, *_ in drafts:
        if counts[name] == 1:
            labels[base] = name
            continue
        tag = _without_quant(base)
        twins = [b for b, n, *_ in drafts if n == name and _without_quant(b) == tag]
        if not tag or len(twins) > 1:
            tag = base[:-5] if base.lower().endswith(".gguf") else base
        labels[base] = f"{name} ({tag})"

    choices = [
        QuantChoice(
            name=labels[base], files=ordered, size=sum(f.size or 0 for f in ordered), bits_per_weight=bpw,
            description=describe_bits(bpw), complete=not missing, missing=missing,
        )
        for base, _name, ordered, missing, bpw in drafts
    ]
    choices.sort(key=lambda c: (not c.size_known, c.size, c.name))
    return choices
