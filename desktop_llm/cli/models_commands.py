"""``desktop-llm models search|info|download|list|delete``: the Models page in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import psutil

from desktop_llm.cli.common import print_table
from desktop_llm.core.errors import AccessDenied, GatedRepo, InvalidRequest
from desktop_llm.core.fit_estimate import MachineMemory, estimate_fit, recommend
from desktop_llm.core.model_library import delete_model, disk_usage
from desktop_llm.core.models import import_model, list_local_models, resolve_model
from desktop_llm.core.quantization import QuantChoice, group_quants
from desktop_llm.core.repo_files import transformers_files
from desktop_llm.core.settings import load_settings
from desktop_llm.core.units import (
    format_bytes,
    format_count,
    format_date,
    format_duration,
    format_speed,
    parameter_count,
)
from desktop_llm.hub.client import HubClient, ModelDetail
from desktop_llm.hub.downloads import DownloadManager, DownloadProgress
from desktop_llm.hub.token_store import TokenStore


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "models_command", None) or "list"
    return {"list": run_list, "search": run_search, "info": run_info, "download": run_download,
            "delete": run_delete}[command](args)


def _client() -> HubClient:
    return HubClient(load_settings().hub_url(), TokenStore().get())


# -- list / delete ------------------------------------------------------------------------------
def run_list(args: argparse.Namespace) -> int:
    if args.import_path:
        ref = import_model(args.import_path)
        print(f"Imported {ref.name} as {ref.id}")
    models = list_local_models()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=1))
        return 0
    if not models:
        print("No local models. Import one with: desktop-llm models --import PATH")
        return 0
    rows = [("ID", "FORMAT", "SIZE", "ARCH", "PARAMS", "QUANT", "CONTEXT", "TEMPLATE", "SOURCE")]
    for m in models:
        rows.append((m.id, m.format.upper(), format_bytes(m.size_bytes), m.architecture or "?",
                     parameter_count(m.parameters) or "?", m.quantization or "?", str(m.context_length or "?"),
                     {True: "yes", False: "no", None: "?"}[m.has_chat_template], m.source))
    print_table(rows)
    for m in models:
        if m.error:
            print(f"warning: {m.id}: {m.error}", file=sys.stderr)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    ref = resolve_model(args.model)
    if ref.source == "bundled":
        delete_model(ref)  # refuses with the reason (CannotDelete) before anything is asked
    size = disk_usage(ref)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidRequest(f"Deleting {ref.name} needs confirmation.", "Add --yes to delete without asking.")
        answer = input(f"Delete {ref.name} ({format_bytes(size)}) at {ref.path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 1
    freed = delete_model(ref)
    print(f"Deleted {ref.name}: {format_bytes(freed)} freed.")
    return 0


# -- Hub ----------------------------------------------------------------------------------------
def run_search(args: argparse.Namespace) -> int:
    formats = () if args.format == "any" else (args.format,)
    page = _client().search(args.text, formats=formats, sort=args.sort, page=max(0, args.page - 1))
    if args.json:
        print(json.dumps([{"repo_id": m.repo_id, "author": m.author, "downloads": m.downloads, "likes": m.likes,
                           "last_modified": m.last_modified.isoformat() if m.last_modified else None,
                           "license": m.license, "gated": m.gated, "formats": list(m.formats)}
                          for m in page.results], indent=1))
        return 0
    if not page.results:
        print("No models match.")
        return 0
    rows = [("MODEL", "DOWNLOADS", "LIKES", "UPDATED", "LICENSE", "ACCESS")]
    for m in page.results:
        rows.append((m.repo_id, format_count(m.downloads), format_count(m.likes), format_date(m.last_modified),
                     m.license or "", "gated" if m.gated else "open"))
    print_table(rows)
    if page.has_next:
        print(f"\nMore on page {page.page + 2}: add --page {page.page + 2}")
    return 0


def _memory() -> MachineMemory:
    # The terminal does not start the engine just to ask about GPUs: RAM only (CPU estimate).
    vm = psutil.virtual_memory()
    return MachineMemory(ram_total=vm.total, ram_available=vm.available)


def _choices(client: HubClient, detail: ModelDetail, n_ctx: int, *,
             need_access: bool = True) -> tuple[list[QuantChoice], list, int | None]:
    choices = group_quants(detail.gguf_files)
    shape = None
    try:
        shape = client.model_shape(detail)
    except (GatedRepo, AccessDenied):
        if need_access:
            raise  # a download: its files cannot be fetched either, so say why now
        # ``info`` of a gated model: its files and sizes are public, only the fit is less exact.
    memory = _memory()
    estimates = [estimate_fit(c.size, shape, n_ctx, memory) for c in choices]
    return choices, estimates, recommend(choices, estimates)


def run_info(args: argparse.Namespace) -> int:
    client = _client()
    detail = client.model_detail(args.repo)
    n_ctx = args.context or load_settings().context_size
    choices, estimates, best = _choices(client, detail, n_ctx, need_access=False)
    if args.json:
        print(json.dumps({
            "repo_id": detail.repo_id, "commit": detail.commit, "license": detail.license, "gated": detail.gated,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in detail.files],
            "quantizations": [{"name": c.name, "files": [f.path for f in c.files], "size": c.size,
                               "fit": e.verdict, "summary": e.summary, "recommended": i == best}
                              for i, (c, e) in enumerate(zip(choices, estimates, strict=True))]}, indent=1))
        return 0
    print(f"{detail.repo_id}  ({format_count(detail.downloads)} downloads, {format_count(detail.likes)} likes, "
          f"license {detail.license or '?'}{', gated' if detail.gated else ''})")
    if detail.card_excerpt:
        print("\n" + detail.card_excerpt + "\n")
    if choices:
        print(f"Quantizations (fit for a context of {n_ctx:,} tokens on this machine, CPU):")
        rows = [("", "QUANT", "SIZE", "FILES", "FIT", "")]
        for i, (c, e) in enumerate(zip(choices, estimates, strict=True)):
            rows.append(("★" if i == best else "", c.name, format_bytes(c.size), str(len(c.files)), e.summary,
                         c.description if c.complete else f"incomplete: parts {c.missing} missing"))
        print_table(rows)
        if best is not None:
            print(f"\nRecommended: {choices[best].name}. Download with: desktop-llm models download {detail.repo_id}")
    else:
        print("Files:")
        print_table([("PATH", "SIZE")] + [(f.path, format_bytes(f.size)) for f in detail.files])
    return 0


def _files_to_get(client: HubClient, detail: ModelDetail, args: argparse.Namespace) -> list:
    if args.files:
        by_path = {f.path: f for f in detail.files}
        missing = [p for p in args.files if p not in by_path]
        if missing:
            raise InvalidRequest(f"{detail.repo_id} has no file {missing[0]!r}.",
                                 f"See the files with: desktop-llm models info {detail.repo_id}")
        return [by_path[p] for p in args.files]
    choices, estimates, best = _choices(client, detail, load_settings().context_size)
    if args.quant:
        wanted = [c for c in choices if c.name.lower() == args.quant.lower()]
        if not wanted:
            names = ", ".join(c.name for c in choices) or "none"
            raise InvalidRequest(f"{detail.repo_id} has no {args.quant} quantization (it has: {names}).")
        return list(wanted[0].files)
    if choices:
        if best is None:
            raise InvalidRequest(f"No quantization of {detail.repo_id} fits this machine.",
                                 "Pick one anyway with --quant NAME, or free memory.")
        return list(choices[best].files)
    if detail.has_safetensors:
        return transformers_files(detail.files)
    raise InvalidRequest(f"{detail.repo_id} has no GGUF files.", "Name the files to get with --file PATH.")


class _ProgressBar:
    """One line per file on stderr, redrawn at most 5 times a second."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        final = p.state in ("done", "failed", "cancelled")
        with self._lock:
            if not final and now - self._last < 0.2:
                return
            self._last = now
            fraction = p.done / p.total if p.total else 0.0
            bar = "#" * int(fraction * 24)
            tail = {"done": "done, verified", "failed": f"failed: {p.error}", "cancelled": "cancelled",
                    "verifying": "checking SHA-256", "paused": "paused", "queued": "waiting"}.get(
                p.state, f"{format_speed(p.speed)} {format_duration(p.eta)} left" if p.eta is not None else
                format_speed(p.speed))
            name = p.path.rsplit("/", 1)[-1]
            line = (f"\r{name[:40]:40} [{bar:24}] {fraction * 100:3.0f}% {format_bytes(p.done)}"
                    f" of {format_bytes(p.total)} {tail}")
            sys.stderr.write(line.ljust(110) + ("\n" if final else ""))
            sys.stderr.flush()


def run_download(args: argparse.Namespace) -> int:
    settings = load_settings()
    tokens = TokenStore()
    client = HubClient(settings.hub_url(), tokens.get())
    detail = client.model_detail(args.repo)
    files = _files_to_get(client, detail, args)
    manager = DownloadManager(endpoint=settings.hub_url(), token_provider=tokens.get,
                              max_parallel=settings.parallel_downloads, on_progress=_ProgressBar())
    try:
        ids = manager.enqueue(detail.repo_id, detail.commit, files)
        results = manager.wait(ids)
    except KeyboardInterrupt:
        manager.shutdown()  # the partial file stays: the same command resumes it
        print("\nPaused. Run the same command again to resume.", file=sys.stderr)
        return 130
    manager.shutdown()
    failed = [p for p in results if p.state != "done"]
    for p in failed:
        print(f"error: {p.path}: {p.error or p.state}", file=sys.stderr)
    if failed:
        return 1
    for p in results:
        print(p.local_path)
    return 0

