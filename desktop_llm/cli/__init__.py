"""``desktop-llm``: the terminal front end (chat, generate, models, finetune, serve, doctor)."""

from __future__ import annotations

import argparse
import sys

from desktop_llm import __version__
from desktop_llm.cli.args import add_model_args, add_sampling_args
from desktop_llm.cli.models_parser import add_models_parser
from desktop_llm.core.errors import DesktopLLMError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="desktop-llm", description="Run language models on your own machine.")
    parser.add_argument("--version", action="version", version=f"desktop-llm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="interactive chat in the terminal (default)")
    chat.add_argument("--system", help="system prompt")
    add_model_args(chat)
    add_sampling_args(chat)

    gen = sub.add_parser("generate", help="one prompt in, text (or JSON-lines events) out")
    gen.add_argument("prompt", help="the prompt ('-' reads standard input)")
    gen.add_argument("--chat", action="store_true", help="send the prompt as a chat message (uses the chat template)")
    gen.add_argument("--system", help="system prompt (with --chat)")
    gen.add_argument("--json", action="store_true", help="print every engine event as a JSON line")
    gen.add_argument("--alternatives", type=int, default=0, metavar="K",
                     help="with each token, the K most likely tokens and their log-probabilities (0-20)")
    add_model_args(gen)
    add_sampling_args(gen)

    add_models_parser(sub)

    ft = sub.add_parser("finetune", help="fine-tune a model on a dataset (LoRA), in a process of its own")
    ft.add_argument("--base", metavar="MODEL", help="model id, name or path (default: the bundled model)")
    ft.add_argument("--data", metavar="FILE", help="dataset: JSONL of chat messages, or JSON / CSV")
    ft.add_argument("--preset", help='"Quick test", "Balanced" (default) or "Thorough"')
    ft.add_argument("--epochs", type=int)
    ft.add_argument("--lr", type=float, help="learning rate")
    ft.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    ft.add_argument("--config", metavar="FILE.json", help="fine-tune settings (flags override them)")
    ft.add_argument("--resume", metavar="RUN_ID", help="continue a cancelled or interrupted run")
    ft.add_argument("--list", action="store_true", help="list the runs")
    ft.add_argument("--export", metavar="RUN_ID", help="export a finished run (see --format); the results join "
                    "the model library")
    ft.add_argument("--format", action="append", choices=("merged", "gguf-f16", "gguf-q8_0"),
                    help="with --export: merged (safetensors), gguf-f16 or gguf-q8_0; repeat for several "
                    "(default gguf-q8_0)")
    ft.add_argument("--json", action="store_true", help="print every event as a JSON line")

    from desktop_llm.cli.serve_command import add_serve_parser

    add_serve_parser(sub)

    doctor = sub.add_parser("doctor", help="versions, backends, devices and data folders")
    doctor.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv or ["chat"])
    try:
        if args.command == "chat":
            from desktop_llm.cli.chat import run
        elif args.command == "generate":
            from desktop_llm.cli.commands import run_generate as run
        elif args.command == "models":
            from desktop_llm.cli.models_commands import run
        elif args.command == "finetune":
            from desktop_llm.cli.finetune_command import run
        elif args.command == "serve":
            from desktop_llm.cli.serve_command import run
        else:
            from desktop_llm.cli.commands import run_doctor as run
        return run(args)
    except DesktopLLMError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
