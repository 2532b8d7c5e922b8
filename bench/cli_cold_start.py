"""Cold start of ``desktop-llm chat`` to the first prompt, and the app process's peak memory.

Starts the real command (a new process each run, the engine with it), waits until the chat is
ready for input (model loaded), asks one question, quits. The app process's memory is sampled
every 5 ms (the engine is a separate process, reported apart). Also checks that the app process
never loaded torch or llama_cpp (from /proc/PID/maps).

    .venv/bin/python bench/cli_cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def peak_watch(proc: psutil.Process, peaks: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            peaks["app"] = max(peaks["app"], proc.memory_info().rss)
            for child in proc.children():
                peaks["engine"] = max(peaks["engine"], child.memory_info().rss)
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            if "libtorch" in maps or "libllama" in maps:
                peaks["heavy"] = 1
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.005)


def one_run() -> tuple[float, float, float, float]:
    bindir = Path(sys.executable).parent
    started = time.perf_counter()
    proc = subprocess.Popen([str(bindir / "desktop-llm"), "chat", "--max-tokens", "32", "--seed", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks = {"app": 0.0, "engine": 0.0, "heavy": 0}
    stop = threading.Event()
    watcher = threading.Thread(target=peak_watch, args=(psutil.Process(proc.pid), peaks, stop), daemon=True)
    watcher.start()
    for line in proc.stderr:
        if line.startswith(b"Ready:"):
            break
    ready = time.perf_counter() - started
    proc.stdin.write(b"Say hello.\n/quit\n")
    proc.stdin.flush()
    proc.wait(60)
    stop.set()
    watcher.join()
    if peaks["heavy"]:
        raise SystemExit("the app process mapped torch or llama.cpp libraries")
    return ready, peaks["app"] / 2**20, peaks["engine"] / 2**20, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    one_run()  # warm the page cache: "cold" here means a new process, not an empty disk cache
    runs = [one_run() for _ in range(args.runs)]
    for i, (ready, app, engine, total) in enumerate(runs, 1):
        print(f"run {i}: ready for the first prompt {ready * 1000:.0f} ms, app peak RSS {app:.1f} MiB, "
              f"engine peak RSS {engine:.1f} MiB, whole session {total:.2f} s")
    print()
    print(f"median cold start to first prompt: {statistics.median(r[0] for r in runs) * 1000:.0f} ms")
    print(f"app process peak RSS (max):        {max(r[1] for r in runs):.1f} MiB (no torch, no llama_cpp)")
    print(f"engine process peak RSS (max):     {max(r[2] for r in runs):.1f} MiB (bundled model, llama.cpp)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
