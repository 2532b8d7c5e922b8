"""Playground engine costs: alternatives on generation speed, and step-mode latency.

(a) generate throughput with alternatives=0 against alternatives=10: same prompt, sampling, seed
    and max_tokens (end-of-generation banned so every run makes the same count), runs alternating;
    medians and the slowdown.
(b) step mode as a user sees it: successive client.next_token calls, each adding the previous
    sampled token to the continuation (so the engine's KV cache is warm: one new token per call);
    round trip median, p90 and max, and the engine's own time.

    .venv/bin/python bench/playground_engine.py [--runs 5] [--tokens 200] [--steps 50] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from desktop_llm.core.models import resolve_model
from desktop_llm.engine.client import EngineClient

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1,
            "logit_bias": {"0": -100, "2": -100}}


def throughput(client: EngineClient, n: int, seed: int, alternatives: int) -> float:
    """Decode tokens/s (after the first token) of one generate request, timed at the client."""
    stamps = [time.perf_counter() for _ in client.generate(
        prompt=PROMPT, params={**SAMPLING, "seed": seed, "max_tokens": n}, alternatives=alternatives)]
    assert len(stamps) == n, f"made {len(stamps)} tokens, not {n}"
    return (n - 1) / (stamps[-1] - stamps[0])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="generate runs per setting (alternating)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads")
    args = parser.parse_args()

    ref = resolve_model(None)
    client = EngineClient()
    client.load(ref, options={"n_threads": args.threads})
    throughput(client, 16, 1, 10)  # warm up (page cache, first-call costs)

    # (a) alternatives off / on
    off: list[float] = []
    on: list[float] = []
    for i in range(args.runs):
        off.append(throughput(client, args.tokens, 42, 0))
        on.append(throughput(client, args.tokens, 42, 10))
        print(f"run {i + 1}: alternatives=0 {off[-1]:.1f} tok/s | alternatives=10 {on[-1]:.1f} tok/s", flush=True)
    med_off, med_on = statistics.median(off), statistics.median(on)

    # (b) step mode: each step adds the previous draw to the continuation
    params = {**SAMPLING, "seed": 7}
    continuation: list[int] = []
    trips: list[float] = []
    engine_ms: list[float] = []
    client.next_token(prompt=PROMPT, params=params)  # the prompt itself is read once, as when a user starts
    for _ in range(args.steps):
        started = time.perf_counter()
        step = client.next_token(prompt=PROMPT, continuation=continuation, params=params, top=20)
        trips.append((time.perf_counter() - started) * 1000)
        engine_ms.append(step["ms"])
        continuation.append(step["sampled"]["token_id"])
    client.shutdown()

    print()
    print(f"model: {ref.name}, {args.threads} threads")
    print(f"(a) generate, {args.tokens} tokens, {args.runs} alternating runs, same prompt/params/seed")
    print(f"    median tokens/s, alternatives=0:   {med_off:.1f}")
    print(f"    median tokens/s, alternatives=10:  {med_on:.1f}")
    ratio = med_on / med_off
    print(f"    alternatives=10 / 0 throughput:    {ratio:.3f}  (slowdown {(1 - ratio) * 100:.1f} %)")
    print(f"(b) step mode, {args.steps} successive next_token calls (warm KV cache, top 20)")
    print(f"    round trip median {statistics.median(trips):.1f} ms, p90 {percentile(trips, 0.9):.1f} ms, "
          f"max {max(trips):.1f} ms  (target well under 100 ms)")
    print(f"    engine time median {statistics.median(engine_ms):.1f} ms, max {max(engine_ms):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
