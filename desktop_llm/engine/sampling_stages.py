"""How the sampler chain picks one next token, stage by stage, in numpy (the Playground's step mode).

The chain and its maths are the backends' own: ``TorchBackend.sample``, which mirrors the
llama.cpp backend's chain (``LlamaCppBackend._sampler``): logit bias, penalties over the last
``repeat_last_n`` history tokens, then greedy (temperature 0) or top-k, typical, top-p, min-p,
temperature and a draw. Here every stage also reports how many tokens it kept, and the final
distribution is returned instead of only the drawn token. No torch: it runs on the llama.cpp
backend's logits too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.alternatives import top_k_ids
from desktop_llm.engine.penalties import Penalties, float32_values, window_counts


def _log_softmax(values: np.ndarray) -> np.ndarray:
    x = values.astype(np.float64)
    x = x - np.max(x)
    return x - np.log(np.sum(np.exp(x)))


def _softmax(values: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(values))


def _top_by(ids: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``probs``, largest first, ties in token id order."""
    pool = np.arange(ids.shape[0])
    if pool.shape[0] > k:
        kth = probs[np.argpartition(-probs, k - 1)[k - 1]]
        pool = pool[probs >= kth]
    order = np.lexsort((ids[pool], -probs[pool]))
    return pool[order][:k]


def explain_next_token(logits: np.ndarray, params: SamplingParams, history: list[int], top: int,
                       rng: np.random.Generator) -> dict[str, Any]:
    """Run the sampler chain on one position's raw logits and say what each stage did.

    ``history``: the tokens chosen so far after the prompt (what the penalties look at).
    Returns ``before`` (top ``top`` of the raw distribution: ``(id, logprob, prob)``), ``after``
    (top ``top`` of the final distribution: ``(id, prob)``), ``stages`` (``{name, kept}`` for
    each active stage, in order), ``kept`` and ``sampled`` (``{token_id, prob, logprob}``).
    """
    raw = np.asarray(logits, dtype=np.float32)
    n_vocab = int(raw.shape[0])
    top = max(1, min(top, n_vocab))
    max_raw = float(np.max(raw))
    log_z = max_raw + float(np.log(np.sum(np.exp(raw.astype(np.float64) - max_raw))))
    before = [(int(i), float(raw[i]) - log_z) for i in top_k_ids(raw, top, max_raw)]

    stages: list[dict[str, Any]] = [{"name": "vocabulary", "kept": n_vocab}]
    x = raw.copy()
    penalties, values = Penalties(params), float32_values(x)
    if params.logit_bias:
        penalties.apply_bias(values)
        stages.append({"name": "logit_bias", "kept": int(np.count_nonzero(np.isfinite(x)))})
    if penalties.active:
        penalties.apply_penalties(values, window_counts(history, params))
        stages.append({"name": "penalties", "kept": int(np.count_nonzero(np.isfinite(x)))})

    if params.temperature == 0:
        # Greedy: the chain stops here, whatever top-k and the others say (as both backends do).
        best = int(np.argmax(x))
        stages.append({"name": "greedy", "kept": 1})
        ids, probs = np.array([best], dtype=np.int64), np.array([1.0])
    else:
        # From here on only candidates are carried (ids with their adjusted logits), as
        # llama.cpp's token array is: a -inf logit has probability 0 at every later stage.
        ids = np.flatnonzero(np.isfinite(x))
        vals = x[ids]
        if params.top_k > 0:
            if params.top_k < ids.shape[0]:
                pick = top_k_ids(vals, params.top_k)
                ids, vals = ids[pick], vals[pick]
            stages.append({"name": "top_k", "kept": int(ids.shape[0])})
        if params.typical_p < 1.0:
            logp = _log_softmax(vals)
            p = np.exp(logp)
            entropy = -float(np.sum(p * logp))
            order = np.argsort(np.abs(-logp - entropy), kind="stable")
            ps = p[order]
            keep = np.zeros(ids.shape[0], dtype=bool)
            keep[order] = (np.cumsum(ps) - ps) <= params.typical_p
            keep[order[0]] = True
            ids, vals = ids[keep], vals[keep]
            stages.append({"name": "typical_p", "kept": int(ids.shape[0])})
        if params.top_p < 1.0:
            order = np.argsort(-vals, kind="stable")
            ps = _softmax(vals[order])
            keep = np.zeros(ids.shape[0], dtype=bool)
            keep[order] = (np.cumsum(ps) - ps) < params.top_p
            keep[order[0]] = True
            ids, vals = ids[keep], vals[keep]
            stages.append({"name": "top_p", "kept": int(ids.shape[0])})
        if params.min_p > 0:
            # On logits, as llama.cpp: p >= min_p * p_max  <=>  logit >= max + log(min_p).
            floor = np.float32(np.max(vals)) + np.float32(np.log(params.min_p))
            keep = vals >= floor
            ids, vals = ids[keep], vals[keep]
            stages.append({"name": "min_p", "kept": int(ids.shape[0])})
        probs = _softmax(vals / np.float32(params.temperature))
        stages.append({"name": "temperature", "kept": int(ids.shape[0])})

    shown = _top_by(ids, probs, top)
    after = [(int(ids[i]), float(probs[i])) for i in shown]
    if params.temperature == 0:
        pick = 0
    else:
        pick = int(np.searchsorted(np.cumsum(probs), rng.random() * float(probs.sum()), side="right"))
        pick = min(pick, ids.shape[0] - 1)
    token = int(ids[pick])
    return {
        "before": [(tid, lp, float(np.exp(lp))) for tid, lp in before],
        "after": after,
        "stages": stages,
        "kept": int(ids.shape[0]),
        "sampled": {"token_id": token, "prob": float(probs[pick]), "logprob": float(raw[token]) - log_z},
    }
