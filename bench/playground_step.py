"""Step mode latency: how long from an "Accept" to the next distribution drawn on screen.

Drives the Playground's ``StepView`` offscreen on the real engine and the bundled model: one
"Next token", then ``--steps`` Accepts, each waiting for the charts to repaint. Figures: median,
p90 and max of the view's ``last_latency_ms`` (the click to both charts repainted) and of the
engine's own ``ms`` for the step (request received to result sent), and their difference (pipe,
threads, GUI update and painting). Target: median latency under 100 ms.

End-of-text tokens are biased away (``--allow-end`` keeps them) so every Accept appends a token.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/playground_step.py [--steps 50] [--prompt TEXT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DESKTOP_LLM_HOME", tempfile.mkdtemp(prefix="playground_step_"))

from PySide6.QtWidgets import QApplication, QLayout  # noqa: E402

from desktop_llm.core.models import resolve_model  # noqa: E402
from desktop_llm.core.sampling import SamplingParams  # noqa: E402
from desktop_llm.engine.client import EngineClient  # noqa: E402
from desktop_llm.gui.engine_bridge import QtEngine  # noqa: E402
from desktop_llm.gui.step_view import StepView  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea, there lived"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(values):7.1f} ms   p90 {percentile(values, 0.9):7.1f} ms   "
            f"max {max(values):7.1f} ms")


def wait_idle(app: QApplication, view: StepView, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while view.busy or view.running:
        if time.perf_counter() > deadline:
            raise TimeoutError("the step did not finish in time")
        app.processEvents()
        time.sleep(0.0005)
    app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="Accepts to time")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--allow-end", action="store_true", help="do not bias end-of-text tokens away")
    args = parser.parse_args()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    engine = QtEngine(EngineClient())
    ref = resolve_model(None)
    started = time.perf_counter()
    info = engine.client.load(ref)  # synchronous: the bench has nothing else to do meanwhile
    engine.loaded_info = info
    load_s = time.perf_counter() - started
    # SmolLM2's end tokens (0 and 2) biased away so the walk runs the full length, as in engine_overhead.
    bias = {} if args.allow_end else {0: -100.0, 2: -100.0}
    params = SamplingParams(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1, seed=7,
                            max_tokens=args.steps + 10, logit_bias=bias)
    view = StepView(engine, lambda: {"prompt": args.prompt}, lambda: params)
    # A top-level view would pass every new minimum size (its labels' text changes) to the offscreen
    # platform window, which prints a warning each time; inside the app it sits in a page.
    view.layout().setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
    view.resize(1100, 800)
    view.show()
    app.processEvents()

    view.next_token()
    wait_idle(app, view)
    first = view.last_latency_ms
    latencies: list[float] = []
    engine_ms: list[float] = []
    ended_at = None
    for i in range(args.steps):
        if view.last_result.get("is_end"):
            ended_at = i
            break
        view.accept()
        wait_idle(app, view)
        if view.error.isVisible():
            print("error:", view.error.text())
            return 1
        latencies.append(view.last_latency_ms)
        engine_ms.append(float(view.last_result["ms"]))
    overhead = [t - e for t, e in zip(latencies, engine_ms, strict=True)]

    print(f"model:                             {ref.name} (loaded in {load_s:.1f} s)")
    print(f"prompt:                            {args.prompt!r}")
    print(f"accepts timed:                     {len(latencies)}"
          + (f" (the model ended the text after {ended_at})" if ended_at is not None else ""))
    print(f"first 'Next token':                {first:.1f} ms (prompt processed)")
    print(summary("click to charts repainted:", latencies))
    print(summary("engine time per step:", engine_ms))
    print(summary("outside the engine:", overhead))
    median = statistics.median(latencies)
    print(f"target: median under 100 ms:       {'met' if median < 100 else 'NOT met'} ({median:.1f} ms)")
    print(f"text written:                      {''.join(t['text'] for t in view.chosen_tokens)!r}")
    view.close()
    engine.client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
