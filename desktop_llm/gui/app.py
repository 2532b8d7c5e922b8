"""``desktop-llm-gui``: the desktop window, on the default model (the bundled SmolLM2 unless set)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.core.paths import HOME_ENV, app_home, data_folder_problem, logs_dir
from desktop_llm.core.settings import load_settings_reporting
from desktop_llm.core.store import ChatStore
from desktop_llm.engine.client import EngineClient
from desktop_llm.gui.background import Background
from desktop_llm.gui.chat_persistence import ChatPersistence
from desktop_llm.gui.engine_bridge import QtEngine
from desktop_llm.gui.main_window import MainWindow
from desktop_llm.gui.theme import apply_theme

# resources/ beside the package in a source checkout (the README's install is editable).
ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "desktop_llm.svg"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="desktop-llm-gui", description="The desktop_llm window.")
    parser.add_argument("-m", "--model", help="model id, name or path (default: the one chosen in Settings)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("desktop_llm")
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    settings, settings_problem = load_settings_reporting()
    apply_theme(app, settings.theme, settings.font_size)
    # The engine finds the same data folder (for its caches) even when it comes from Settings.
    engine_env = {**os.environ, HOME_ENV: str(app_home())}
    engine = QtEngine(EngineClient(env=engine_env, log_path=logs_dir() / "engine.log"))
    store_problem = None
    try:
        store = ChatStore(app_home() / "chats.db")
    except DesktopLLMError as exc:  # the chat still works in memory; the user is told why nothing is saved
        store, store_problem = ChatStore(":memory:"), str(exc)
    persistence = ChatPersistence(store, Background())
    persistence.purge_deleted()  # chats deleted (and not undone) in an earlier session are gone for good
    window = MainWindow(engine, persistence, settings)
    window.show()
    if settings_problem:
        window.chat.transcript.add_note(settings_problem, error=True)
    folder_problem = data_folder_problem()
    if folder_problem:
        window.chat.transcript.add_note(folder_problem, error=True)
    if store_problem:
        window.chat.transcript.add_note(f"Chats will not be saved: {store_problem}", error=True)
    window.chat.open_latest()
    window.load_default_model(args.model)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
