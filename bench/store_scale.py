"""Chat history at scale: open a 2,000-message conversation; search 100,000 messages.

Targets (issue 3): a 2,000-message conversation opens in under 1 s; a search over 100,000
messages answers in under 100 ms. Data is loaded through the store's own JSON import.

    .venv/bin/python bench/store_scale.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from desktop_llm.core.store import ChatStore

# A deliberately tiny vocabulary: every common-word query matches tens of thousands of messages.
WORDS = [
    "model", "token", "probability", "sampling", "river", "mountain", "recipe", "garden", "python", "rust",
    "window", "engine", "context", "memory", "lighthouse", "keeper", "bottle", "message", "ocean", "wave",
    "sunrise", "library", "chapter", "story", "question", "answer", "science", "history", "music",
    "painting", "kitchen", "travel", "weather", "winter", "summer",
]


def export_text(n: int, rng: random.Random, title: str) -> str:
    messages, parent = [], None
    for i in range(n):
        mid = f"m{i}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))
        messages.append({"id": mid, "parent_id": parent, "role": "user" if i % 2 == 0 else "assistant",
                         "content": text, "created_at": i, "status": "complete"})
        parent = mid
    return json.dumps({"format": "desktop_llm.conversation", "version": 1,
                       "conversation": {"title": title, "current_leaf_id": parent}, "messages": messages})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        store = ChatStore(Path(tmp) / "chats.db")
        started = time.perf_counter()
        big = store.import_json(export_text(2000, rng, "Long chat"))
        total = 2000
        while total < args.messages:
            store.import_json(export_text(1000, rng, f"Chat {total}"))
            total += 1000
        store.add_message(big.id, "user", "Where is the zanzibarian lighthouse?", big.current_leaf_id)
        print(f"loaded {total + 1} messages in {time.perf_counter() - started:.1f} s")
        store.close()

        opens = []
        for _ in range(5):
            t = time.perf_counter()
            s = ChatStore(Path(tmp) / "chats.db")
            path = s.current_path(big.id)
            opens.append(time.perf_counter() - t)
            s.close()
        assert len(path) == 2001
        s = ChatStore(Path(tmp) / "chats.db")
        searches = {}
        for query in ("zanzibarian", "lighthouse keeper", "ocean wav", "probability sampling token"):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                hits = s.search(query)
                times.append(time.perf_counter() - t)
            searches[query] = (statistics.median(times), len(hits))
        print("open a 2,000-message conversation (new connection + path): "
              f"median {statistics.median(opens) * 1000:.1f} ms   (target < 1000 ms)")
        for query, (secs, n) in searches.items():
            print(f"search {query!r} over {total + 1} messages: median {secs * 1000:.1f} ms, {n} hits"
                  "   (target < 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
