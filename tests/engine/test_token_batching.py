"""The engine writes a fast reply's token events a few at a time (worker.TOKEN_BATCH_SECONDS):
every write wakes the app. What the app reads must not change: the same events, in order, the
first token at once and every held token before the final event."""

from __future__ import annotations

import threading
import time

from desktop_llm.engine.protocol import decode
from desktop_llm.engine.worker import Worker

PARAMS = {"temperature": 0.7, "seed": 5, "max_tokens": 24, "logit_bias": {"0": float("-inf"), "2": float("-inf")}}


class _Pipe:
    """Stands in for the engine's stdout: keeps each write as the app's reader would receive it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def _writes(backend, batch_seconds: float) -> list[list[dict]]:
    pipe = _Pipe()
    worker = Worker(pipe, token_batch_seconds=batch_seconds)  # type: ignore[arg-type]
    worker._backend = backend
    worker._cancels["g"] = threading.Event()
    worker._op_generate("g", {"id": "g", "op": "generate", "prompt": "Tell me about boats.", "params": PARAMS},
                        time.perf_counter())
    return [[decode(line) for line in data.splitlines()] for data in pipe.writes]


def _token_events(writes: list[list[dict]]) -> list[dict]:
    return [event for batch in writes for event in batch if event["event"] == "token"]


def test_token_events_are_batched_without_changing_what_arrives(llamacpp_smol):
    one_by_one = _writes(llamacpp_smol, 0.0)
    assert [len(batch) for batch in one_by_one] == [1] * 25  # 24 tokens, then done
    assert one_by_one[-1][0]["event"] == "done"

    # A window longer than the reply: the first token goes out at once, the others are held
    # and written together just before the done event.
    batched = _writes(llamacpp_smol, 60.0)
    assert [len(batch) for batch in batched] == [1, 23, 1]
    assert batched[0][0]["event"] == "token" and batched[-1][0]["event"] == "done"
    assert _token_events(batched) == _token_events(one_by_one)
    assert batched[-1][0]["text"] == one_by_one[-1][0]["text"]
