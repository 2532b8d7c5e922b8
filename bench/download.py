"""Download throughput: the app's download manager against plain ``hf_hub_download``.

Both fetch the same big file (512 MB of random bytes by default) from the Hub look-alike on 127.0.0.1,
in alternating runs, each into a fresh cache folder. The app's time includes its SHA-256 verification
and the move into the cache; huggingface_hub's progress bars are off so it runs at its best.
Target (issue): the app reaches at least 0.95 of ``hf_hub_download``'s throughput.

    .venv/bin/python bench/download.py [--size-mb 512] [--runs 3] [--keep-file]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # import tests.hub.fake_hub from the repo

import huggingface_hub.constants  # noqa: E402
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.utils import disable_progress_bars  # noqa: E402

from desktop_llm.core.repo_files import RepoFile  # noqa: E402
from desktop_llm.hub.downloads import DownloadManager  # noqa: E402
from tests.hub.fake_hub import FakeHub  # noqa: E402

REPO = "BenchOrg/Big-File"
NAME = "big-model.gguf"


def make_file(path: Path, size_mb: int) -> Path:
    """Random bytes (incompressible), written once and reused by later runs."""
    if path.exists() and path.stat().st_size == size_mb << 20:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    tmp.replace(path)
    return path


def run_hf(hub: FakeHub, cache: Path) -> float:
    started = time.perf_counter()
    hf_hub_download(REPO, NAME, cache_dir=cache, endpoint=hub.url, token=False)
    return time.perf_counter() - started


def run_app(hub: FakeHub, cache: Path, commit: str, file: RepoFile) -> float:
    manager = DownloadManager(hub.url, lambda: None, cache_dir=cache, state_file=cache / "downloads.json",
                              on_progress=lambda p: None)
    started = time.perf_counter()
    [result] = manager.wait(manager.enqueue(REPO, commit, [file]))
    elapsed = time.perf_counter() - started
    manager.shutdown()
    if result.state != "done":
        raise SystemExit(f"the app's download failed: {result.error}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="runs of each downloader (alternating)")
    parser.add_argument("--file", type=Path, default=Path(tempfile.gettempdir()) / "desktop_llm_bench" / "download.bin")
    parser.add_argument("--keep-file", action="store_true", help="keep the random file for the next run")
    args = parser.parse_args()

    huggingface_hub.constants.HF_HUB_OFFLINE = False
    disable_progress_bars()
    source = make_file(args.file, args.size_mb)
    size = source.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="desktop_llm_bench_dl_"))
    times: dict[str, list[float]] = {"hf_hub_download": [], "app": []}
    try:
        with FakeHub() as hub:
            hub.add_repo(REPO, {NAME: source})  # served with sendfile: the server is not the bottleneck
            info = HfApi(endpoint=hub.url).model_info(REPO, files_metadata=True, token=False)
            commit = info.sha
            sibling = next(s for s in info.siblings if s.rfilename == NAME)
            file = RepoFile(NAME, sibling.size, sibling.lfs.sha256)
            for i in range(args.runs):
                for name in ("hf_hub_download", "app"):
                    cache = work / f"{name}-{i}"
                    elapsed = run_hf(hub, cache) if name == "hf_hub_download" else run_app(hub, cache, commit, file)
                    times[name].append(elapsed)
                    print(f"run {i + 1} {name:16} {elapsed:6.2f} s  {size / elapsed / 1e6:7.0f} MB/s", flush=True)
                    shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_file:
            source.unlink(missing_ok=True)

    print(f"\nfile: {size / 1e6:.0f} MB, {args.runs} runs each, loopback, fresh cache per run")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, median in medians.items():
        print(f"median {name:16} {median:6.2f} s  {size / median / 1e6:7.0f} MB/s")
    ratio = medians["hf_hub_download"] / medians["app"]
    print(f"throughput ratio app / hf_hub_download: {ratio:.2f} (target >= 0.95)")
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
