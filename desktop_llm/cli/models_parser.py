"""The arguments of ``desktop-llm models ...`` (kept apart so parsing never imports the Hub client)."""

from __future__ import annotations

import argparse


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="local models, and models on the Hugging Face Hub",
                            description="Without a subcommand: list the local models.")
    models.add_argument("--json", action="store_true")
    models.add_argument("--import", dest="import_path", metavar="PATH", help="add a GGUF file or model folder")
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    ls = msub.add_parser("list", help="local models with their facts (the default)")
    # SUPPRESS: when not given here, the value given before the subcommand (`models --json list`) stands.
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    ls.add_argument("--import", dest="import_path", metavar="PATH", default=argparse.SUPPRESS,
                    help="add a GGUF file or model folder")
    search = msub.add_parser("search", help="search the Hub")
    search.add_argument("text", nargs="?", default="")
    search.add_argument("--format", choices=("any", "gguf", "transformers"), default="gguf")
    search.add_argument("--sort", choices=("downloads", "likes", "recent"), default="downloads")
    search.add_argument("--page", type=int, default=1, help="page number, from 1")
    search.add_argument("--json", action="store_true")
    info = msub.add_parser("info", help="a Hub model: card, files, quantizations and whether each fits here")
    info.add_argument("repo", help="owner/name")
    info.add_argument("--context", type=int, help="context size for the fit estimate (default: from Settings)")
    info.add_argument("--json", action="store_true")
    dl = msub.add_parser("download", help="download a model (resumes a partial download)")
    dl.add_argument("repo", help="owner/name")
    dl.add_argument("--quant", help="quantization to download (e.g. Q4_K_M); default: the recommended one")
    dl.add_argument("--file", action="append", dest="files", metavar="PATH", help="a file of the repo (repeatable)")
    delete = msub.add_parser("delete", help="delete a local model's files")
    delete.add_argument("model", help="model id, name or path (see `desktop-llm models`)")
    delete.add_argument("--yes", action="store_true", help="do not ask")
