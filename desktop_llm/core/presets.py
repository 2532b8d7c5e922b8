"""Built-in sampling presets: named sets of sampling values a user picks instead of tuning each one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desktop_llm.core.sampling import SamplingParams


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any]

    def apply(self, params: SamplingParams) -> SamplingParams:
        return params.with_updates(**self.values)


BUILTIN_PRESETS: tuple[Preset, ...] = (
    Preset("Balanced", "Varied but on topic: good for most chats.",
           {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}),
    Preset("Precise", "Sticks to the likeliest words: facts, code, extraction.",
           {"temperature": 0.2, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.05}),
    Preset("Creative", "Takes more chances: stories, brainstorming.",
           {"temperature": 1.0, "top_p": 0.95, "top_k": 0, "min_p": 0.05, "repeat_penalty": 1.1}),
    Preset("Deterministic", "Always the single likeliest token (greedy): the same reply every time.",
           {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}),
)


def preset_named(name: str | None) -> Preset | None:
    return next((p for p in BUILTIN_PRESETS if p.name == name), None)
