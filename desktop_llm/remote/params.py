"""SamplingParams -> the JSON fields of an OpenAI-compatible request.

The standard OpenAI fields go to every endpoint. llama.cpp's server and vLLM also read the
llama.cpp-style sampler fields (top_k, min_p...), so a provider with ``sampling_extensions`` gets
them too. A strict hosted API may refuse or silently ignore them; for such a provider a value the
user changed is refused here by name, never dropped without a word.
"""

from __future__ import annotations

from typing import Any

from desktop_llm.core.errors import UnsupportedParameter
from desktop_llm.core.sampling import SamplingParams

# Extension field -> the values that need no extension: the app's default and the "off" value.
# Sending nothing for these leaves the endpoint's own sampler as it is, which is what they mean.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "top_k": (SamplingParams.top_k, 0),
    "min_p": (SamplingParams.min_p, 0.0),
    "typical_p": (SamplingParams.typical_p, 1.0),
    "repeat_penalty": (SamplingParams.repeat_penalty, 1.0),
    "repeat_last_n": (SamplingParams.repeat_last_n, 0),
    "mirostat_mode": (0,),
}


def openai_fields(params: SamplingParams, extensions: bool) -> dict[str, Any]:
    """The request fields for ``params``; raises ``UnsupportedParameter`` for an extension a strict provider lacks."""
    fields: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    if params.stop:
        fields["stop"] = list(params.stop)
    if params.seed is not None:
        fields["seed"] = params.seed
    if params.logit_bias:
        fields["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
    if params.json_schema:
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": params.json_schema, "strict": True},
        }
    if extensions:
        fields.update({
            "top_k": params.top_k,
            "min_p": params.min_p,
            "typical_p": params.typical_p,
            "repeat_penalty": params.repeat_penalty,
            # vLLM's name for the same penalty; llama.cpp's server ignores it.
            "repetition_penalty": params.repeat_penalty,
            "repeat_last_n": params.repeat_last_n,
            "mirostat": params.mirostat_mode,
            "mirostat_tau": params.mirostat_tau,
            "mirostat_eta": params.mirostat_eta,
        })
        if params.grammar:
            fields["grammar"] = params.grammar
        return fields
    _refuse_extensions(params)
    return fields


def _refuse_extensions(params: SamplingParams) -> None:
    changed = [name for name, neutral in _NEUTRAL.items() if getattr(params, name) not in neutral]
    # Mirostat's tau and eta only matter when mirostat is on, and then mirostat_mode is refused first.
    if params.grammar:
        changed.append("grammar")
    if changed:
        names = ", ".join(changed)
        raise UnsupportedParameter(
            f"This provider is set to standard OpenAI fields only, so it cannot use the sampling "
            f"parameter{'s' if len(changed) > 1 else ''} {names}.",
            "Reset them to their defaults, or turn on \"llama.cpp / vLLM sampling fields\" for the provider "
            "in Settings → Remote providers if the endpoint supports them.")
