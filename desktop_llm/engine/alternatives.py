"""Log-probabilities and top-k alternatives from one position's raw logits.

Computed with numpy over the last token's logits only (not llama.cpp's ``logits_all``, which
was measured at ~40 ms per token against under 1 ms for this).
"""

from __future__ import annotations

import math
from types import TracebackType

import numpy as np

# Top-k candidates are first looked for within this many nats of the largest logit: any token
# outside the window ranks below every token in it, so when the window holds at least k tokens
# the result is exact, and it is far cheaper than partitioning the whole vocabulary.
_WINDOW_NATS = 12.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Natural-log probabilities of a whole logits vector, in float64."""
    x = logits.astype(np.float64, copy=False)
    m = np.max(x)
    return x - (m + np.log(np.sum(np.exp(x - m))))


def top_k_ids(logits: np.ndarray, k: int, max_logit: float | None = None) -> np.ndarray:
    """Ids of the ``k`` largest logits, largest first (ties in id order)."""
    m = float(np.max(logits)) if max_logit is None else max_logit
    window = np.flatnonzero(logits >= m - _WINDOW_NATS)
    pool = window if window.shape[0] >= k else np.arange(logits.shape[0])
    values = logits[pool]
    if pool.shape[0] > k:
        kth = values[np.argpartition(-values, k - 1)[k - 1]]
        keep = values >= kth  # everything tied with the k-th value too, so ties resolve by id
        pool, values = pool[keep], values[keep]
    order = np.lexsort((pool, -values))
    return pool[order][:k]


# A sum of exp(raw logits) below this means the largest terms were near float32's smallest
# normal numbers (about e^-87) and may have lost precision.
_SMALLEST_SAFE_SUM = math.exp(-60.0)


def _log_normalizer(logits: np.ndarray, buf: np.ndarray) -> tuple[float, float | None]:
    """log(sum(exp(logits))), and the largest logit when it had to be computed.

    Usually exp() is taken of the raw logits, without first finding the largest one: two passes
    over the vocabulary instead of four, which matters because this runs for every generated
    token. That is exact as long as nothing overflows and the sum is not vanishingly small,
    which is checked; otherwise the usual max-shifted form is used. Call it with numpy's
    overflow and underflow warnings off (``np.errstate``). Scalars go through ``math``: with
    the caches cold from the model's decode, every numpy call costs ~10-20 us.
    """
    np.exp(logits, out=buf)
    total = float(buf.sum())
    if math.isfinite(total) and total > _SMALLEST_SAFE_SUM:
        return math.log(total), None
    m = float(np.max(logits))
    np.subtract(logits, m, out=buf)
    np.exp(buf, out=buf)
    return m + math.log(float(buf.sum())), m


def logprob_and_top_k(logits: np.ndarray, chosen: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's log-probability under the model's distribution, and the ``k`` most likely tokens.

    The distribution is the model's own (softmax of the raw logits, temperature 1), before the
    sampler's penalties and cut-offs, which is what "how likely did the model think this was" means.
    For one position; a loop over a reply's tokens uses ``ReplyScorer``.
    """
    with ReplyScorer() as score:
        return score(np.asarray(logits, dtype=np.float32), chosen, k)


class ReplyScorer:
    """``logprob_and_top_k`` for the positions of one reply: the work buffer is made, and numpy's
    overflow and underflow warnings turned off, once for the reply instead of once a token.

        with ReplyScorer() as score:
            logprob, alternatives = score(logits, token, k)  # logits: contiguous float32

    Inside a generator the warnings stay off while it is suspended (numpy keeps them in a
    context variable of the thread): harmless for the generation loop that drives it.
    """

    def __init__(self) -> None:
        self._buf = np.empty(0, dtype=np.float32)
        self._errstate = np.errstate(over="ignore", under="ignore")

    def __enter__(self) -> ReplyScorer:
        self._errstate.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._errstate.__exit__(kind, exc, tb)

    def __call__(self, logits: np.ndarray, chosen: int, k: int) -> tuple[float, list[tuple[int, float]]]:
        if self._buf.shape != logits.shape:
            self._buf = np.empty_like(logits)
        log_z, m = _log_normalizer(logits, self._buf)  # numpy's pairwise float32 sum: ~1e-7 relative error
        chosen_lp = float(logits[chosen]) - log_z
        if k <= 0:
            return chosen_lp, []
        top = top_k_ids(logits, min(k, logits.shape[0]), m)
        return chosen_lp, [(int(i), float(logits[i]) - log_z) for i in top]
