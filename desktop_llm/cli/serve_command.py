"""``desktop-llm serve``: the local OpenAI-compatible server without the window, with a live request log."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import replace

from desktop_llm.core.models import resolve_model
from desktop_llm.core.paths import logs_dir
from desktop_llm.core.settings import load_settings
from desktop_llm.engine.client import EngineClient
from desktop_llm.server.config import ServerConfig
from desktop_llm.server.http_server import LocalServer
from desktop_llm.server.key_store import ServerKeyStore
from desktop_llm.server.request_log import LogEntry

KEY_ENV = "DESKTOP_LLM_API_KEY"


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve the library's models over an OpenAI-compatible API",
                           description="Serve the library's models at /v1/models, /v1/chat/completions and "
                           "/v1/completions. Defaults come from the Server page's settings.")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; others need an API key)")
    serve.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    serve.add_argument("--api-key-env", metavar="VAR", default=KEY_ENV,
                       help=f"environment variable holding the API key (default {KEY_ENV}); without it, the key "
                       "set on the Server page (kept in the keyring) is used")
    serve.add_argument("--no-key", action="store_true", help="serve without a key (127.0.0.1 only)")
    serve.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                       help="allow browser pages from this origin (CORS); repeat for several; * for any")
    serve.add_argument("--idle-unload", type=int, metavar="SECONDS",
                       help="free a model after this long without requests (0: never; default 600)")
    serve.add_argument("--log-bodies", action="store_true", help="also log request and reply bodies")
    serve.add_argument("--preload", metavar="MODEL", help="load this model (id or name) before serving")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    config = ServerConfig.from_dict(settings.server)
    changes = {"host": args.host, "port": args.port, "idle_unload_seconds": args.idle_unload,
               "allowed_origins": args.allow_origin, "log_bodies": args.log_bodies or None}
    config = replace(config, **{k: v for k, v in changes.items() if v is not None})
    key = None if args.no_key else (os.environ.get(args.api_key_env) or ServerKeyStore().get())

    client = EngineClient(log_path=logs_dir() / "engine.log")
    server = LocalServer(client, config, key, on_log=_print_entry)
    try:
        if args.preload:
            # Loaded as this client's own model: the idle timer keeps it, like the window's model.
            ref = resolve_model(args.preload)
            print(f"Loading {ref.name} …", file=sys.stderr, flush=True)
            load = server.models.load_request(ref)
            client.load(ref, load["backend"], load["options"])
        url = server.start()
        access = "API key required" if key else "no API key"
        print(f"Serving on {url} ({access}). Models: {', '.join(r.id for r in server.models.models())}",
              file=sys.stderr)
        print("Press Ctrl+C to stop.", file=sys.stderr, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    finally:
        server.stop()
        client.shutdown()
    return 0


def _print_entry(entry: LogEntry) -> None:
    print(entry.line(), file=sys.stderr, flush=True)
    if entry.body is not None:
        print(f"  request: {entry.body}", file=sys.stderr, flush=True)
    if entry.reply is not None:
        print(f"  reply: {entry.reply}", file=sys.stderr, flush=True)

