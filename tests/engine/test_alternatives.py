from __future__ import annotations

import warnings

import numpy as np
import pytest

from desktop_llm.engine.alternatives import ReplyScorer, log_softmax, logprob_and_top_k, top_k_ids


@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0, 40.0])  # flat (window falls back) to very peaked
@pytest.mark.parametrize("k", [1, 5, 20])
# Logits far above or below zero: exp() of the raw values would overflow or vanish.
@pytest.mark.parametrize("offset", [0.0, 95.0, -120.0])
def test_windowed_top_k_is_exact(scale, k, offset):
    rng = np.random.default_rng(int(scale * 100) + k)
    logits = (rng.standard_normal(49152) * scale + offset).astype(np.float32)
    logits[rng.integers(0, 49152, 50)] = logits.max()  # ties at the top
    expected = np.lexsort((np.arange(logits.shape[0]), -logits))[:k]
    assert top_k_ids(logits, k).tolist() == expected.tolist()
    chosen = int(expected[0])
    lp, alts = logprob_and_top_k(logits, chosen, k)
    full = log_softmax(logits)
    assert lp == pytest.approx(full[chosen], abs=1e-5)
    assert [i for i, _ in alts] == expected.tolist()
    assert [v for _, v in alts] == pytest.approx(full[expected].tolist(), abs=1e-5)


@pytest.mark.parametrize("offset", [0.0, 95.0, -120.0])
def test_a_replys_scorer_gives_the_same_without_numpy_warnings(offset):
    rng = np.random.default_rng(7)
    positions = [(rng.standard_normal(49152) * 3 + offset).astype(np.float32) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp() of logits near 95 overflows: that must stay silent
        with ReplyScorer() as score:
            scored = [score(logits, 11, 5) for logits in positions]
    for logits, (lp, alts) in zip(positions, scored, strict=True):
        full = log_softmax(logits)
        assert lp == pytest.approx(full[11], abs=1e-5)
        assert (lp, alts) == logprob_and_top_k(logits, 11, 5)
