"""Logit bias and repetition penalties on raw logits, computed exactly as llama.cpp's samplers do.

Used by step mode (``sampling_stages``) and by the llama.cpp backend, which applies them to the
logits before its sampler chain instead of adding llama.cpp's own penalties sampler: that one
looks every vocabulary entry up in a hash map, ~0.2 ms a token for a 49k vocabulary (as much
as the rest of the chain), where only the few tokens of the recent window need touching.

The few touched logits are read and written one by one through a float32 memoryview: once a
token, with caches cold from the model's decode, a dozen numpy calls on 50 elements cost
~150 us and this loop a fraction of that. Python computes in double precision and the
memoryview rounds each result to float32; for one multiplication, division, addition or
subtraction of two float32 values that is the float32 result itself (double has more than
twice float32's precision), so every operation below is rounded where llama.cpp's float
arithmetic rounds it, in its order, and the same tokens are sampled
(tests/engine/test_penalties.py compares the two).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

import numpy as np

from desktop_llm.core.sampling import SamplingParams


def penalties_active(params: SamplingParams) -> bool:
    penalised = params.repeat_penalty != 1 or params.frequency_penalty != 0 or params.presence_penalty != 0
    return params.repeat_last_n > 0 and penalised


def _float32(value: float) -> float:
    return float(np.float32(value))


def float32_values(x: np.ndarray) -> memoryview:
    """The elements of the contiguous float32 array ``x``, as a memoryview to read and write them one by one."""
    return memoryview(x).cast("B").cast("f")


class Penalties:
    """A request's bias and penalty settings, held in float32 as llama.cpp's samplers hold them."""

    def __init__(self, params: SamplingParams) -> None:
        self.bias = [(int(token), _float32(value)) for token, value in params.logit_bias.items()]
        self.active = penalties_active(params)
        self.window = params.repeat_last_n
        self.repeat = _float32(params.repeat_penalty)
        self._frequency = _float32(params.frequency_penalty)
        self._presence = _float32(params.presence_penalty)
        self.subtracts = self._frequency != 0 or self._presence != 0
        self._subtrahends: dict[int, float] = {}

    def subtrahend(self, count: int) -> float:
        """``count * frequency + presence``, rounded after each operation (llama.cpp: float arithmetic)."""
        value = self._subtrahends.get(count)
        if value is None:
            value = self._subtrahends[count] = _float32(_float32(count * self._frequency) + self._presence)
        return value

    def apply_bias(self, values: memoryview) -> None:
        """The logit bias, in place (llama.cpp's logit-bias sampler)."""
        for token, bias in self.bias:
            values[token] = values[token] + bias

    def apply_penalties(self, values: memoryview, counts: Iterable[tuple[int, int]]) -> None:
        """In place, the penalties for the tokens that occurred ``count`` times in the window, as
        llama.cpp's penalties sampler (which runs after the logit bias)."""
        if not self.active:
            return
        repeat = self.repeat
        for token, count in counts:
            value = values[token]
            # Negative logits are multiplied, or a penalty would make them more likely.
            values[token] = value * repeat if value <= 0 else value / repeat
            if self.subtracts:
                values[token] = values[token] - self.subtrahend(count)


def window_counts(history: list[int], params: SamplingParams) -> list[tuple[int, int]]:
    """The distinct tokens of the penalty window (the last ``repeat_last_n`` of ``history``), with their counts."""
    if not penalties_active(params) or not history:
        return []
    return list(Counter(history[-params.repeat_last_n:]).items())


class PenaltyWindow:
    """The tokens generated so far as the penalties see them, kept up to date token by token, and
    the bias and penalties applied to a position's logits and taken back off again."""

    def __init__(self, params: SamplingParams, enabled: bool = True) -> None:
        """``enabled`` False: llama.cpp's own samplers do the bias and penalties, and this does nothing."""
        self._penalties = Penalties(params)
        self.active = enabled and self._penalties.active
        self.needed = self.active or (enabled and bool(params.logit_bias))
        self._recent: deque[int] = deque()
        self._counts: dict[int, int] = {}
        self._x: np.ndarray | None = None
        self._values = memoryview(b"")
        self._saved: list[tuple[int, float]] = []

    def accept(self, token: int) -> None:
        if not self.active:
            return
        counts = self._counts
        self._recent.append(token)
        counts[token] = counts.get(token, 0) + 1
        if len(self._recent) > self._penalties.window:
            old = self._recent.popleft()
            if counts[old] == 1:
                del counts[old]
            else:
                counts[old] -= 1

    def apply(self, x: np.ndarray) -> bool:
        """Adjust the float32 logits ``x`` in place; True if anything changed (then ``restore()`` later)."""
        if not self.needed:
            return False
        if x is not self._x:  # the backend hands the same view over as long as llama.cpp's buffer stays
            self._x, self._values = x, float32_values(x)
        values = self._values
        penalties = self._penalties
        # Saved before each change; put back in reverse order, so a token both biased and
        # penalised ends with its first (raw) value.
        saved = [(token, values[token]) for token, _ in penalties.bias]
        penalties.apply_bias(values)
        if self.active:
            saved += [(token, values[token]) for token in self._counts]
            penalties.apply_penalties(values, self._counts.items())
        self._saved = saved
        return True

    def restore(self) -> None:
        """Put back the logits ``apply`` changed: the model's own, for the log-probabilities."""
        values = self._values
        for token, value in reversed(self._saved):
            values[token] = value
        self._saved = []
