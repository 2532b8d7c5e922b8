"""``desktop-llm-gui``: the desktop window, on the bundled model unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.models import resolve_model
from desktop_llm.core.paths import app_home, logs_dir
from desktop_llm.core.store import ChatStore
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.chat_window import ChatWindow
from desktop_llm.gui.engine_bridge import QtEngine

# resources/ beside the package in a source checkout (the README's install is editable).
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "desktop_llm.svg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="desktop-llm-gui", description="The desktop_llm window.")
    parser.add_argument("-m", "--model", help="model id, name or path (default: the bundled SmolLM2)")
    parser.add_argument("--backend", choices=["auto", "llamacpp", "torch"], default="auto")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("desktop_llm")
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    engine = QtEngine(EngineClient(log_path=logs_dir() / "engine.log"))
    store_problem = None
    try:
        persistence = ChatPersistence(ChatStore(app_home() / "chats.db"), Background())
    except DesktopLLMError as exc:  # the chat still works; nothing is saved, and the user is told why
        persistence, store_problem = None, str(exc)
    window = ChatWindow(engine, persistence=persistence)
    window.show()
    if store_problem:
        window.show_note(f"Chats will not be saved: {store_problem}", error=True)
    try:
        model = resolve_model(args.model)
    except DesktopLLMError as exc:
        window._on_load_failed(str(exc))
    else:
        engine.load(model, backend=args.backend)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
