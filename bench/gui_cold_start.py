"""Cold start of the desktop window: time to a shown, usable window and to a loaded model; memory.

Each run starts a new process running the real ``desktop-llm-gui`` entry point (``app.main``)
with a fresh data folder holding a 2,000-message chat (reopened at start, as the newest chat).
The child reports when the window is on screen and takes input, and when the bundled model is
loaded (Send enabled); the parent samples the app process's memory every 5 ms (the engine is a
separate process, reported apart) and checks that the app never loaded torch or llama_cpp.

    .venv/bin/python bench/gui_cold_start.py [--runs 5]   # offscreen by default; set QT_QPA_PLATFORM=xcb for X
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from cli_cold_start import peak_watch  # bench/ is on sys.path when run as a script


def child() -> int:
    """Runs in the measured process: the real app, plus a timer that reports what a user would see."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    marks: dict[str, float] = {}

    def poll() -> None:
        from desktop_llm.gui.main_window import MainWindow

        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
        if not windows:
            return
        win = windows[0]
        now = time.time()
        if "shown" not in marks and win.isVisible():
            marks["shown"] = now
        if "chat" not in marks and "Show 1" in win.chat.transcript.plain_text():
            marks["chat"] = now  # the reopened 2,000-message chat is on screen
        if "ready" not in marks and win.chat.send_button.isEnabled():
            marks["ready"] = now
        if {"shown", "chat", "ready"} <= marks.keys():
            print(json.dumps(marks), flush=True)
            win.close()

    timer = QTimer(interval=5)
    timer.timeout.connect(poll)
    timer.start()
    from desktop_llm.gui import app as app_module

    return app_module.main([])


def seed(home: Path) -> None:
    from desktop_llm.core.store import ChatStore

    store = ChatStore(home / "chats.db")
    conv = store.create_conversation("A long chat")
    parent = None
    for i in range(2000):
        role = "user" if i % 2 == 0 else "assistant"
        parent = store.add_message(conv.id, role, f"Message {i}: " + "some words about rivers. " * 6, parent).id
    store.close()


def main() -> int:
    if "--child" in sys.argv:
        return child()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    base = Path(tempfile.mkdtemp(prefix="gui_cold_start_"))
    seed(base)
    shown, chat, ready, apps, engines = [], [], [], [], []
    heavy = False
    for _ in range(args.runs):
        env["DESKTOP_LLM_HOME"] = str(base)
        started = time.time()
        proc = subprocess.Popen([sys.executable, __file__, "--child"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, text=True)
        peaks = {"app": 0.0, "engine": 0.0, "heavy": 0}
        stop = threading.Event()
        watcher = threading.Thread(target=peak_watch, args=(psutil.Process(proc.pid), peaks, stop), daemon=True)
        watcher.start()
        line = proc.stdout.readline()
        proc.wait(timeout=60)
        stop.set()
        watcher.join()
        marks = json.loads(line)
        shown.append((marks["shown"] - started) * 1000)
        chat.append((marks["chat"] - started) * 1000)
        ready.append((marks["ready"] - started) * 1000)
        apps.append(peaks["app"] / 2**20)
        engines.append(peaks["engine"] / 2**20)
        heavy = heavy or bool(peaks["heavy"])
    print(f"runs: {args.runs} ({env['QT_QPA_PLATFORM']})")
    print(f"window shown:                    median {statistics.median(shown):.0f} ms "
          f"(min {min(shown):.0f}, max {max(shown):.0f})")
    print(f"2,000-message chat on screen:    median {statistics.median(chat):.0f} ms "
          f"(min {min(chat):.0f}, max {max(chat):.0f})")
    print(f"model loaded, Send enabled:      median {statistics.median(ready):.0f} ms "
          f"(min {min(ready):.0f}, max {max(ready):.0f})")
    print(f"app process peak memory:         {max(apps):.1f} MiB; engine process {max(engines):.1f} MiB")
    print(f"app process loaded torch or llama.cpp: {'YES' if heavy else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
