"""What each sampling parameter is, for people: label, valid range, one-line explanation, group.

One table for the Playground's form, preset import checks and the CLI; ``SamplingParams.validate``
stays the engine's last word, and these ranges sit inside what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams


@dataclass(frozen=True)
class SamplingField:
    name: str
    label: str
    kind: str  # "float", "int", "choice", "seed", "stops", "bias", "grammar", "schema"
    help: str
    group: str = "basic"  # "basic" or "advanced"
    lo: float | None = None
    hi: float | None = None
    step: float = 1.0
    off: str = ""  # what the lowest value means, shown instead of it ("Off", "Random")
    choices: tuple[tuple[int, str], ...] = ()
    llamacpp_only: bool = False  # the PyTorch backend refuses it (see engine protocol)


FIELDS: tuple[SamplingField, ...] = (
    SamplingField("temperature", "Temperature", "float",
                  "Divides the scores before they become probabilities: below 1 sharpens toward the likeliest "
                  "token, above 1 flattens; 0 always takes the likeliest (greedy).", lo=0.0, hi=5.0, step=0.05),
    SamplingField("top_k", "Top-k", "int",
                  "Keeps only the k likeliest tokens and drops the rest before drawing. Off keeps all.",
                  lo=0, hi=1000, off="Off"),
    SamplingField("top_p", "Top-p", "float",
                  "Keeps the likeliest tokens until together they make up this share of the probability "
                  "(nucleus sampling). 1 keeps all.", lo=0.01, hi=1.0, step=0.05),
    SamplingField("min_p", "Min-p", "float",
                  "Drops every token less likely than this share of the likeliest one. Off keeps all.",
                  lo=0.0, hi=1.0, step=0.01, off="Off"),
    SamplingField("max_tokens", "Max tokens", "int",
                  "Stops after this many new tokens (a token is about three quarters of a word).",
                  lo=1, hi=32768, step=16),
    SamplingField("seed", "Seed", "seed",
                  "Starts the random draw here: the same seed, prompt and settings give the same text. "
                  "Random: different each run.", lo=-1, hi=2**31 - 1, off="Random"),
    SamplingField("stop", "Stop sequences", "stops",
                  "The text ends when it would write one of these (one per line); it is not included."),
    SamplingField("repeat_penalty", "Repeat penalty", "float",
                  "Divides the score of every token seen in the last tokens (below): against loops. 1 is off.",
                  "advanced", lo=0.5, hi=3.0, step=0.05),
    SamplingField("repeat_last_n", "Penalty window", "int",
                  "How many of the latest tokens the repeat, presence and frequency penalties look at. "
                  "Off: none.", "advanced", lo=0, hi=4096, step=16, off="Off"),
    SamplingField("presence_penalty", "Presence penalty", "float",
                  "Subtracts this from the score of any token already in the window: pushes toward new "
                  "topics.", "advanced", lo=-2.0, hi=2.0, step=0.1),
    SamplingField("frequency_penalty", "Frequency penalty", "float",
                  "Subtracts this times the number of times a token is in the window: against repeating "
                  "the same words.", "advanced", lo=-2.0, hi=2.0, step=0.1),
    SamplingField("typical_p", "Typical-p", "float",
                  "Keeps tokens whose surprise is close to the average surprise, up to this share of the "
                  "probability (locally typical sampling). 1 is off.", "advanced", lo=0.01, hi=1.0, step=0.05),
    SamplingField("mirostat_mode", "Mirostat", "choice",
                  "Replaces top-k/top-p/min-p with a controller that keeps the text's surprise near tau.",
                  "advanced", choices=((0, "Off"), (1, "Mirostat 1"), (2, "Mirostat 2")), llamacpp_only=True),
    SamplingField("mirostat_tau", "Mirostat tau", "float",
                  "The surprise (in bits) mirostat aims for: lower is more focused.", "advanced",
                  lo=0.1, hi=20.0, step=0.5, llamacpp_only=True),
    SamplingField("mirostat_eta", "Mirostat eta", "float",
                  "How fast mirostat corrects toward tau.", "advanced", lo=0.01, hi=1.0, step=0.01,
                  llamacpp_only=True),
    SamplingField("logit_bias", "Logit bias", "bias",
                  "Adds a number to chosen tokens' scores, one 'token id: bias' per line; -100 bans a token.",
                  "advanced"),
    SamplingField("grammar", "GBNF grammar", "grammar",
                  "Only lets the model write text this grammar accepts (llama.cpp's GBNF).", "advanced",
                  llamacpp_only=True),
    SamplingField("json_schema", "JSON schema", "schema",
                  "Only lets the model write JSON that fits this schema.", "advanced", llamacpp_only=True),
)

BY_NAME = {f.name: f for f in FIELDS}
TORCH_REFUSES = "The PyTorch backend cannot use this; load a GGUF model with llama.cpp for it."


def unsupported_reason(name: str, backend: str | None) -> str | None:
    """Why the loaded backend cannot honour parameter ``name``, or None if it can."""
    f = BY_NAME.get(name)
    if f is not None and f.llamacpp_only and backend == "torch":
        return TORCH_REFUSES
    return None


def check_values(values: dict[str, Any]) -> SamplingParams:
    """Sampling values from a person or a file -> SamplingParams; a value outside the form's range is refused
    with a message naming it and its range (the engine would accept some of them, but the form could not show
    them)."""
    for name, value in values.items():
        f = BY_NAME.get(name)
        if f is None or f.lo is None or f.hi is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{f.label} ({name}) must be a number, not {value!r}.")
        lo, hi = f.lo, f.hi
        if f.kind == "seed":
            lo = 0
        if not lo <= value <= hi:
            raise InvalidRequest(f"{f.label} ({name}) is {value:g}, outside its range {lo:g} to {hi:g}.",
                                 f"Use a value from {lo:g} to {hi:g}.")
        if f.kind in ("int", "seed") and value != int(value):
            raise InvalidRequest(f"{f.label} ({name}) must be a whole number, not {value:g}.")
    return SamplingParams.from_dict(values)


def parse_logit_bias(text: str) -> dict[int, float]:
    """'id: bias' lines -> {id: bias}; a bad line is refused with its number."""
    out: dict[int, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        try:
            if not sep:
                raise ValueError
            token, bias = int(key.strip()), float(value.strip())
        except ValueError:
            raise InvalidRequest(f"Logit bias line {number} ({line!r}) is not 'token id: bias'.",
                                 "Write one token id, a colon and a number per line, e.g. '1234: -100'.") from None
        if not -100 <= bias <= 100:
            raise InvalidRequest(f"Logit bias line {number}: {bias:g} is outside -100 to 100.")
        out[token] = bias
    return out


def format_logit_bias(bias: dict[int, float]) -> str:
    return "\n".join(f"{k}: {v:g}" for k, v in bias.items())
