"""Logit bias and repetition penalties on raw logits, computed exactly as llama.cpp's samplers do.

Used by step mode (``sampling_stages``) and by the llama.cpp backend, which applies them to the
logits before its sampler chain instead of adding llama.cpp's own penalties sampler: that one
looks every vocabulary entry up in a hash map, ~0.2 ms a token for a 49k vocabulary (as much
as the rest of the chain), where only the few tokens of the recent window need touching.
Same float32 operations in the same order, so the same tokens are sampled
(tests/engine/test_penalties.py compares the two).
"""

from __future__ import annotations

from collections import Counter, deque

import numpy as np

from desktop_llm.core.sampling import SamplingParams


def penalties_active(params: SamplingParams) -> bool:
    penalised = params.repeat_penalty != 1 or params.frequency_penalty != 0 or params.presence_penalty != 0
    return params.repeat_last_n > 0 and penalised


def bias_arrays(params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    return (np.fromiter(params.logit_bias, dtype=np.int64, count=len(params.logit_bias)),
            np.fromiter(params.logit_bias.values(), dtype=np.float32, count=len(params.logit_bias)))


def apply_bias(x: np.ndarray, bias: tuple[np.ndarray, np.ndarray]) -> None:
    """In place on float32 logits ``x``: the logit bias (``bias_arrays(params)``), as llama.cpp's logit-bias sampler."""
    x[bias[0]] += bias[1]


def apply_penalties(x: np.ndarray, params: SamplingParams, ids: np.ndarray, counts: np.ndarray) -> None:
    """In place on float32 logits ``x``: the penalties for the tokens ``ids`` that occurred ``counts`` times
    in the window, as llama.cpp's penalties sampler (which runs after the logit bias)."""
    if ids.size and penalties_active(params):
        sel = x[ids]
        rp = np.float32(params.repeat_penalty)
        # Negative logits are multiplied, or a penalty would make them more likely.
        sel = np.where(sel <= 0, sel * rp, sel / rp)
        x[ids] = sel - (counts.astype(np.float32) * np.float32(params.frequency_penalty)
                        + np.float32(params.presence_penalty))


def window_counts(history: list[int], params: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """The distinct tokens of the penalty window (the last ``repeat_last_n`` of ``history``) and their counts."""
    if not penalties_active(params) or not history:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.unique(np.asarray(history[-params.repeat_last_n:], dtype=np.int64), return_counts=True)


class PenaltyWindow:
    """The tokens generated so far as the penalties see them, kept up to date token by token."""

    def __init__(self, params: SamplingParams, enabled: bool = True) -> None:
        """``enabled`` False: llama.cpp's own samplers do the bias and penalties, and this does nothing."""
        self.params = params
        self.active = enabled and penalties_active(params)
        self.needed = self.active or (enabled and bool(params.logit_bias))
        self._bias = bias_arrays(params)
        self._recent: deque[int] = deque()
        self._counts: Counter[int] = Counter()

    def accept(self, token: int) -> None:
        if not self.active:
            return
        self._recent.append(token)
        self._counts[token] += 1
        if len(self._recent) > self.params.repeat_last_n:
            old = self._recent.popleft()
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Adjust ``x`` in place; return (ids, original values) to put back afterwards, or None if untouched."""
        if not self.needed:
            return None
        n = len(self._counts)
        ids = np.fromiter(self._counts, dtype=np.int64, count=n)
        counts = np.fromiter(self._counts.values(), dtype=np.int64, count=n)
        touched = np.concatenate((self._bias[0], ids))
        original = x[touched]
        apply_bias(x, self._bias)
        apply_penalties(x, self.params, ids, counts)
        return touched, original
