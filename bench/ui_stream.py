"""Stream 4,000 tokens into the chat page through the real signal path; measure the GUI's cost.

Tokens are emitted by ``QtEngine.token`` from a worker thread, as the engine client does, and reach
the real ``ChatPage`` (transcript rendering, saving to a real store) through Qt's queued
connection. Figures:

- the longest event-loop stall while streaming (a 2 ms heartbeat timer; target: at most 30 ms);
- the GUI time per token in the first and last 10 % of the stream (target: last <= 1.5 x first,
  i.e. no re-rendering of the whole reply per token);
- the one-time render when the reply ends.

The chat holds ``--history`` earlier messages, so the view scrolls from the first token on, as in
a chat with some history; with ``--history 0`` the first lines fit without scrolling and are
cheaper, which shows as a step after the first tenth, not as growth with the reply's length.

By default a Markdown-rich reply (paragraphs, lists, code blocks, a table) is streamed at
``--rate`` tokens/s; ``--engine`` streams a real 4,000-token reply from the bundled model instead.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/ui_stream.py [--tokens 4000] [--rate 200] [--engine]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DESKTOP_LLM_HOME", tempfile.mkdtemp(prefix="ui_stream_"))

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop_llm.core.settings import Settings  # noqa: E402
from desktop_llm.core.store import ChatStore  # noqa: E402
from desktop_llm.engine.client import EngineClient  # noqa: E402
from desktop_llm.gui.background import Background  # noqa: E402
from desktop_llm.gui.chat_persistence import ChatPersistence  # noqa: E402
from desktop_llm.gui.engine_bridge import QtEngine  # noqa: E402
from desktop_llm.gui.main_window import MainWindow  # noqa: E402

REPLY = """Here is a walk through the idea, step by step.

## What happens

The model reads the prompt as tokens, then predicts the next token again and again. Each step
gives a probability for every token in the vocabulary, and the sampler picks one.

1. Tokenize the prompt.
2. Run the model over it once.
3. Sample a token, append it, repeat.

```python
def generate(model, tokens, steps):
    for _ in range(steps):
        logits = model(tokens)[-1]
        probs = softmax(logits / temperature)
        token = sample(probs)
        tokens.append(token)
        if token == EOS:
            break
    return tokens
```

| Setting | Effect |
|---|---|
| temperature | sharper or flatter choices |
| top_p | keep the most likely mass |

> Lower temperatures make replies more predictable; higher ones more varied.

"""


def synthetic_tokens(count: int) -> list[str]:
    words = REPLY.replace("\n", " \n").split(" ")
    out: list[str] = []
    i = 0
    while len(out) < count:
        word = words[i % len(words)]
        out.append(word if word.startswith("\n") or not out else " " + word)
        i += 1
    return out


class SyntheticEngine(QtEngine):
    """A QtEngine whose replies come from a thread emitting ``token`` like the engine client does."""

    def __init__(self, tokens: list[str], rate: float) -> None:
        super().__init__(EngineClient())
        self._tokens, self._rate = tokens, rate

    def generate(self, messages, params, fit_context=True):  # noqa: ANN001, ANN201 - QtEngine's signature
        self._generating = True

        def work() -> None:
            start = time.perf_counter()
            for i, text in enumerate(self._tokens):
                self.token.emit({"event": "token", "token_id": i, "text": text, "logprob": -0.5,
                                 "alternatives": []})
                delay = start + (i + 1) / self._rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self._generating = False
            self.finished.emit({"event": "done", "finish_reason": "length", "usage": {
                "prompt_tokens": 20, "completion_tokens": len(self._tokens)}, "n_ctx": 8192, "dropped_messages": 0})

        threading.Thread(target=work, daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=200.0, help="tokens per second (synthetic stream)")
    parser.add_argument("--engine", action="store_true", help="stream a real reply from the bundled model")
    parser.add_argument("--history", type=int, default=8,
                        help="earlier messages in the chat (0: an empty chat, whose first lines need no scrolling)")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    home = Path(os.environ["DESKTOP_LLM_HOME"])
    if args.engine:
        engine = QtEngine(EngineClient())
        settings = Settings(context_size=8192)
    else:
        engine = SyntheticEngine(synthetic_tokens(args.tokens), args.rate)
        settings = Settings()
    store = ChatStore(home / "chats.db")
    history_id = None
    if args.history:
        conv = store.create_conversation("Earlier questions")
        history_id, parent = conv.id, None
        for i in range(args.history):
            role = "user" if i % 2 == 0 else "assistant"
            parent = store.add_message(conv.id, role, f"Message {i}: " + "a few words about the topic. " * 12,
                                       parent).id
    window = MainWindow(engine, ChatPersistence(store, Background()), settings)
    window.resize(1200, 800)
    window.show()
    page = window.chat
    if args.engine:
        loaded = []
        engine.loaded.connect(loaded.append)
        window.load_default_model()
        while not loaded:
            app.processEvents()
            time.sleep(0.01)
        # No end-of-generation tokens (SmolLM2: 0 and 2), so the reply runs the full length.
        page.settings = Settings(context_size=8192, sampling={"repeat_penalty": 1.1})
        original = page.chat_params
        page.chat_params = lambda: original().with_updates(logit_bias={0: -100.0, 2: -100.0})  # type: ignore[method-assign]
    else:
        page.on_model_loaded({"model": {"id": "synthetic", "name": "synthetic"}, "n_ctx": 8192})

    # Time the page's token handler: disconnect it and call it through a timer.
    costs: list[float] = []
    engine.token.disconnect(page._on_token)

    def timed(event: dict) -> None:
        t0 = time.perf_counter()
        page._on_token(event)
        costs.append(time.perf_counter() - t0)

    engine.token.connect(timed)
    beats: list[float] = []
    heartbeat = QTimer(interval=2)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    finished: list[float] = []
    page.reply_done.connect(lambda _done: finished.append(time.perf_counter()))

    page.input.setPlainText("Explain how a language model writes a reply, with code." if not args.engine
                            else "Write a very long essay about the history of computing, with examples.")
    if history_id is not None:
        page.open_conversation(history_id)
        while len(page.path) < args.history:
            app.processEvents()
            time.sleep(0.005)
    if args.engine:  # the chat's own settings (set after it is opened): the full length, reproducibly
        page.conv.params = {"max_tokens": args.tokens, "temperature": 0.8, "seed": 1}
    # Start-up work (model list, Markdown warm-up) finishes first, as it does before a user has typed.
    window.persistence.background.drain()
    settle = time.perf_counter() + 0.5
    while time.perf_counter() < settle:
        app.processEvents()
        time.sleep(0.005)
    heartbeat.start()
    started = time.perf_counter()
    page.send()
    send_cost = time.perf_counter() - started
    while not finished:
        app.processEvents()
        time.sleep(0.0005)
    stream_end = finished[0]
    heartbeat.stop()

    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False) if a >= started and b <= stream_end]
    n = len(costs)
    tenth = max(1, n // 10)
    first, last = costs[:tenth], costs[-tenth:]
    t0 = time.perf_counter()
    page.transcript.end_reply(page.path[-1])  # the one-time render when a reply ends, measured alone
    final_render = time.perf_counter() - t0
    if os.environ.get("UI_STREAM_DEBUG"):
        pairs = sorted(((b - a, a - started) for a, b in zip(beats, beats[1:], strict=False)
                        if a >= started and b <= stream_end), reverse=True)[:6]
        print("largest gaps (ms, at s):", [(round(g * 1000, 1), round(t, 2)) for g, t in pairs])
    print(f"chat before the reply:    {args.history} messages")
    print(f"tokens streamed:          {n} in {stream_end - started:.1f} s "
          f"({'bundled model' if args.engine else f'synthetic, {args.rate:.0f} tok/s'})")
    print(f"reply length:             {len(page.path[-1].content):,} characters")
    print(f"longest event-loop stall: {max(gaps) * 1000:.1f} ms (target <= 30 ms; heartbeat every 2 ms)")
    print(f"GUI time per token:       first 10 % mean {statistics.mean(first) * 1000:.3f} ms, "
          f"median {statistics.median(first) * 1000:.3f} ms")
    print(f"                          last 10 % mean {statistics.mean(last) * 1000:.3f} ms, "
          f"median {statistics.median(last) * 1000:.3f} ms")
    deciles = [statistics.median(costs[i * tenth:(i + 1) * tenth]) * 1000 for i in range(10)]
    print("median per tenth (ms):   ", " ".join(f"{d:.3f}" for d in deciles))
    print(f"last / first (medians):   {statistics.median(last) / statistics.median(first):.2f}")
    print(f"last / first (means):     {statistics.mean(last) / statistics.mean(first):.2f} (target <= 1.5)")
    worst = sorted(range(n), key=costs.__getitem__)[-5:]
    print(f"slowest single token:     {max(costs) * 1000:.1f} ms (the five slowest: "
          + ", ".join(f"#{i} {costs[i] * 1000:.1f} ms" for i in reversed(worst)) + ")")
    print(f"send (user message shown, reply started): {send_cost * 1000:.0f} ms")
    print(f"final render at the end:  {final_render * 1000:.0f} ms (once per reply)")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
