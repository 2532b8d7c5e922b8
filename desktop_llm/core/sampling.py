"""Sampling parameters: one ``SamplingParams`` shared by GUI, CLI, engine and store."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from desktop_llm.core.errors import InvalidRequest


@dataclass
class SamplingParams:
    """How the next token is picked. Defaults follow llama.cpp's, which users of LM Studio know."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    seed: int | None = None
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise ``InvalidRequest`` naming the first value out of range."""
        checks = [
            (self.temperature >= 0, "temperature must be 0 or more (0 means always the most likely token)"),
            (self.top_k >= 0, "top_k must be 0 (off) or more"),
            (0 < self.top_p <= 1, "top_p must be above 0 and at most 1"),
            (0 <= self.min_p <= 1, "min_p must be between 0 and 1"),
            (0 < self.typical_p <= 1, "typical_p must be above 0 and at most 1"),
            (self.repeat_penalty > 0, "repeat_penalty must be above 0 (1 means off)"),
            (self.repeat_last_n >= 0, "repeat_last_n must be 0 or more"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty must be between -2 and 2"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty must be between -2 and 2"),
            (self.mirostat_mode in (0, 1, 2), "mirostat_mode must be 0 (off), 1 or 2"),
            (self.mirostat_tau > 0, "mirostat_tau must be above 0"),
            (self.mirostat_eta > 0, "mirostat_eta must be above 0"),
            (self.max_tokens >= 1, "max_tokens must be at least 1"),
            (not (self.grammar and self.json_schema), "give a grammar or a JSON schema, not both"),
            (self.seed is None or 0 <= self.seed < 2**32, "seed must be between 0 and 4294967295"),
            (all(isinstance(s, str) and s for s in self.stop), "stop sequences must be non-empty text"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidRequest(f"Invalid sampling parameter: {message}.")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamplingParams:
        """Build from a (JSON) mapping; unknown keys are an error, not silently dropped."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(
                f"Unknown sampling parameter(s): {', '.join(unknown)}.",
                f"Known parameters: {', '.join(sorted(known))}.",
            )
        if "logit_bias" in data and data["logit_bias"]:
            try:
                data["logit_bias"] = {int(k): float(v) for k, v in data["logit_bias"].items()}
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(
                    "logit_bias must map token ids (whole numbers) to biases (numbers)."
                ) from exc
        if isinstance(data.get("json_schema"), str):
            try:
                data["json_schema"] = json.loads(data["json_schema"])
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"json_schema is not valid JSON: {exc}.") from exc
        params = cls(**data)
        params.validate()
        return params

    def changed_from_default(self) -> set[str]:
        """Names of the parameters that differ from their defaults (what a backend must honour)."""
        default = SamplingParams()
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def with_updates(self, **changes: Any) -> SamplingParams:
        data = self.to_dict()
        data.update(changes)
        return SamplingParams.from_dict(data)
