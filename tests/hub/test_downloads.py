"""The download manager against the Hub look-alike on 127.0.0.1, checked with the real huggingface_hub
client: files land in the standard HF cache, verified; pause, resume (also after the app was killed),
cancel, retries, checksum and disk-space failures, gated repos and tokens, the parallel limit."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache

from desktop_llm.core.errors import (
    ChecksumMismatch,
    DiskFull,
    DownloadError,
    GatedRepo,
    NoNetwork,
    RateLimited,
    TokenInvalid,
)
from desktop_llm.core.repo_files import RepoFile
from desktop_llm.hub.downloads import DownloadManager, DownloadProgress
from tests.hub.hub_fixtures import GGUF_REPO

ROOT = Path(__file__).resolve().parents[2]
BIG = "SmolOrg/Big-GGUF"
GATED = "GatedOrg/Gated-GGUF"
ALICE = "hf_testtokenvalue123456"
Q2K = "SmolLM2-135M-Instruct-Q2_K.gguf"  # 200 KB
Q8 = "SmolLM2-135M-Instruct-Q8_0.gguf"  # 600 KB
F16 = "SmolLM2-135M-Instruct-F16.gguf"  # 800 KB


def repo_files(hub, repo_id: str, token: str | None = None) -> tuple[str, dict[str, RepoFile]]:
    """The commit and files (size, LFS SHA-256) of a repo, as the real client reads them."""
    info = HfApi(endpoint=hub.url).model_info(repo_id, files_metadata=True, token=token or False)
    files = {s.rfilename: RepoFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings}
    return info.sha, files


class Recorder:
    """Collects progress events (they arrive from worker threads)."""

    def __init__(self) -> None:
        self.events: list[DownloadProgress] = []
        self.lock = threading.Lock()

    def __call__(self, p: DownloadProgress) -> None:
        with self.lock:
            self.events.append(p)

    def of(self, download_id: str) -> list[DownloadProgress]:
        with self.lock:
            return [e for e in self.events if e.id == download_id]


@pytest.fixture()
def make_manager(populated_hub, tmp_path):
    """Managers on the Hub look-alike with a private cache and state file; shut down after the test."""
    made: list[DownloadManager] = []

    def make(token: str | None = None, **kwargs) -> DownloadManager:
        kwargs.setdefault("cache_dir", tmp_path / "hf-cache")
        kwargs.setdefault("state_file", tmp_path / "home" / "downloads.json")
        kwargs.setdefault("backoff", 0.05)
        kwargs.setdefault("on_progress", Recorder())
        endpoint = kwargs.pop("endpoint", populated_hub.url)
        manager = DownloadManager(endpoint, lambda: token, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.shutdown()


def wait_until(condition, timeout: float = 10.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


def snapshot_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("snapshots/*/*"))


def incomplete_files(cache: Path) -> list[Path]:
    return list(cache.rglob("*.incomplete"))


def range_start(request: dict) -> int:
    return int(request["range"].split("=")[1].split("-")[0]) if request["range"] else 0


# -- the happy path -------------------------------------------------------------------------------
def test_download_lands_in_the_hf_cache_verified(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    manager = make_manager()
    ids = manager.enqueue(GGUF_REPO, commit, [files[Q2K], files["README.md"]])
    results = manager.wait(ids, timeout=20)
    assert [r.state for r in results] == ["done", "done"]
    cache = tmp_path / "hf-cache"
    expected = hub.repos[GGUF_REPO].files[Q2K].data
    # huggingface_hub (and so transformers, llama.cpp tools...) finds the files where it expects them.
    found = try_to_load_from_cache(GGUF_REPO, Q2K, cache_dir=cache)
    assert isinstance(found, str) and Path(found).read_bytes() == expected
    readme = try_to_load_from_cache(GGUF_REPO, "README.md", cache_dir=cache)
    assert isinstance(readme, str) and Path(readme).read_bytes().startswith(b"---\nlicense")
    assert results[0].local_path == found and results[0].done == results[0].total == len(expected)
    # The standard layout: a relative symlink from the snapshot to the content-addressed blob, refs/main.
    storage = cache / "models--SmolOrg--SmolLM2-135M-Instruct-GGUF"
    link = storage / "snapshots" / commit / Q2K
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (storage / "blobs" / files[Q2K].sha256).resolve()
    assert (storage / "refs" / "main").read_text() == commit
    assert not incomplete_files(cache)
    # Progress: bytes grew to the total, and the last word is "done".
    events = manager.on_progress.of(ids[0])
    assert events[-1].state == "done" and events[-1].done == len(expected)
    assert {"downloading", "verifying"} <= {e.state for e in events}
    assert all(e.total == len(expected) for e in events)
    # Asking again costs nothing: the file is in the cache.
    before = len(hub.file_requests(Q2K))
    again = manager.enqueue(GGUF_REPO, commit, [files[Q2K]])
    assert manager.wait(again, timeout=5)[0].state == "done"
    assert len(hub.file_requests(Q2K)) == before


def test_a_file_another_tool_downloaded_is_not_fetched_again(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    cache = tmp_path / "hf-cache"
    path = hf_hub_download(GGUF_REPO, Q8, revision=commit, cache_dir=cache, endpoint=hub.url, token=False)
    gets = len(hub.file_requests(Q8))
    manager = make_manager()
    [result] = manager.wait(manager.enqueue(GGUF_REPO, commit, [files[Q8]]), timeout=5)
    assert result.state == "done" and result.local_path == path and result.done == files[Q8].size
    assert len(hub.file_requests(Q8)) == gets


def test_split_pair_downloads_both_parts(populated_hub, make_manager, tmp_path):
    commit, files = repo_files(populated_hub, BIG)
    parts = [files[n] for n in sorted(files) if "-of-00002" in n]
    manager = make_manager()
    ids = manager.enqueue(BIG, commit, parts)
    assert len(ids) == 2
    assert [r.state for r in manager.wait(ids, timeout=20)] == ["done", "done"]
    for part in parts:
        found = try_to_load_from_cache(BIG, part.path, cache_dir=tmp_path / "hf-cache")
        assert isinstance(found, str) and Path(found).read_bytes() == populated_hub.repos[BIG].files[part.path].data


# -- network trouble ------------------------------------------------------------------------------
def test_dropped_connection_is_resumed_with_a_range_request(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.drop_after[Q8] = (150_000, 2)  # the connection closes twice, 150 KB into each answer
    manager = make_manager()
    [result] = manager.wait(manager.enqueue(GGUF_REPO, commit, [files[Q8]]), timeout=20)
    assert result.state == "done", result.error
    assert [range_start(r) for r in hub.file_requests(Q8)] == [0, 150_000, 300_000]
    found = try_to_load_from_cache(GGUF_REPO, Q8, cache_dir=tmp_path / "hf-cache")
    assert Path(found).read_bytes() == hub.repos[GGUF_REPO].files[Q8].data


def test_server_errors_and_rate_limits_are_retried(populated_hub, make_manager):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.http_error[Q2K] = (503, 2)
    hub.faults.http_error[Q8] = (429, 1)  # with Retry-After: 1
    manager = make_manager()
    started = time.monotonic()
    results = manager.wait(manager.enqueue(GGUF_REPO, commit, [files[Q2K], files[Q8]]), timeout=20)
    assert [r.state for r in results] == ["done", "done"]
    assert len(hub.file_requests(Q2K)) == 3 and len(hub.file_requests(Q8)) == 2
    assert time.monotonic() - started >= 0.9  # the Hub's Retry-After was honoured


def test_retries_run_out_with_a_clear_error(populated_hub, make_manager):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.http_error[Q2K] = (503, 5)
    hub.faults.http_error[F16] = (429, 5)
    manager = make_manager(retries=1)
    ids = manager.enqueue(GGUF_REPO, commit, [files[Q2K], files[F16]])
    results = manager.wait(ids, timeout=20)
    assert [r.state for r in results] == ["failed", "failed"]
    assert type(manager.error(ids[0])) is DownloadError and "503" in results[0].error
    assert isinstance(manager.error(ids[1]), RateLimited)
    assert not snapshot_files(manager.cache_dir)


def test_no_network(make_manager, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = make_manager(endpoint=f"http://127.0.0.1:{port}", retries=1)
    file = RepoFile("model.gguf", 1000, "a" * 64)
    [result] = manager.wait(manager.enqueue("SmolOrg/x", "b" * 40, [file]), timeout=20)
    assert result.state == "failed" and result.error_code == "no_network"
    assert isinstance(manager.error(result.id), NoNetwork) and "connection" in result.error


# -- pause, resume, cancel ------------------------------------------------------------------------
def test_pause_then_resume_continues_from_the_partial_bytes(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.slow[F16] = 400_000  # bytes a second: two seconds for the file
    manager = make_manager()
    [download_id] = manager.enqueue(GGUF_REPO, commit, [files[F16]])
    wait_until(lambda: manager.get(download_id).done > 100_000)
    manager.pause(download_id)
    wait_until(lambda: manager.get(download_id).state == "paused", timeout=2)
    paused = manager.get(download_id)
    cache = tmp_path / "hf-cache"
    [partial] = incomplete_files(cache)
    assert paused.done == partial.stat().st_size and 0 < paused.done < files[F16].size
    assert not snapshot_files(cache)  # a partial file is never a model
    time.sleep(0.3)
    assert manager.get(download_id).done == paused.done  # paused means paused

    hub.faults.slow.pop(F16)
    manager.resume(download_id)
    [result] = manager.wait([download_id], timeout=20)
    assert result.state == "done" and result.done == result.total == files[F16].size
    last = hub.file_requests(F16)[-1]
    assert range_start(last) == paused.done  # continued, not restarted
    assert Path(result.local_path).read_bytes() == hub.repos[GGUF_REPO].files[F16].data
    # Progress came at most about ten times a second, with a speed and a time left while it ran.
    running = [e for e in manager.on_progress.of(download_id) if e.state == "downloading"]
    assert any(e.speed > 0 and e.eta is not None for e in running)
    assert len(running) <= 12 * 2.5


def test_cancel_stops_within_a_second_and_leaves_nothing(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.slow[F16] = 100_000
    manager = make_manager()
    [download_id] = manager.enqueue(GGUF_REPO, commit, [files[F16]])
    wait_until(lambda: manager.get(download_id).done > 20_000)
    started = time.monotonic()
    manager.cancel(download_id)
    wait_until(lambda: manager.get(download_id).state == "cancelled", timeout=1.0)
    assert time.monotonic() - started < 1.0
    cache = tmp_path / "hf-cache"
    assert not incomplete_files(cache) and not snapshot_files(cache)
    assert manager.get(download_id).done == 0


def test_killed_app_lists_the_download_and_resumes_it(populated_hub, tmp_path, make_manager):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.slow[F16] = 150_000
    cache, state = tmp_path / "hf-cache", tmp_path / "home" / "downloads.json"
    f = files[F16]
    child = textwrap.dedent(f"""
        import time
        from desktop_llm.core.repo_files import RepoFile
        from desktop_llm.hub.downloads import DownloadManager
        manager = DownloadManager({hub.url!r}, lambda: None, cache_dir={str(cache)!r}, state_file={str(state)!r})
        manager.enqueue({GGUF_REPO!r}, {commit!r}, [RepoFile({f.path!r}, {f.size!r}, {f.sha256!r})])
        time.sleep(60)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env)
    try:
        partial = cache / "models--SmolOrg--SmolLM2-135M-Instruct-GGUF" / "blobs" / f"{f.sha256}.incomplete"
        wait_until(lambda: partial.exists() and partial.stat().st_size > 100_000, timeout=20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    have = partial.stat().st_size
    assert 0 < have < f.size and not snapshot_files(cache)
    saved = json.loads(state.read_text())
    assert [(d["repo_id"], d["commit"], d["path"]) for d in saved["downloads"]] == [(GGUF_REPO, commit, F16)]

    hub.faults.slow.pop(F16)
    manager = make_manager()  # the app starts again
    [listed] = manager.list()
    assert listed.state == "paused" and listed.done == have and listed.total == f.size
    assert listed.repo_id == GGUF_REPO and listed.path == F16
    manager.resume(listed.id)
    [result] = manager.wait([listed.id], timeout=20)
    assert result.state == "done", result.error
    assert range_start(hub.file_requests(F16)[-1]) == have
    assert Path(result.local_path).read_bytes() == hub.repos[GGUF_REPO].files[F16].data
    assert json.loads(state.read_text())["downloads"] == []  # nothing left to resume


def test_shutdown_keeps_partials_for_the_next_start(populated_hub, make_manager):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.slow[F16] = 200_000
    first = make_manager(max_parallel=1)
    running, queued = first.enqueue(GGUF_REPO, commit, [files[F16], files[Q2K]])
    wait_until(lambda: first.get(running).done > 50_000)
    first.shutdown()
    states = {p.id: (p.state, p.done) for p in first.list()}
    assert states[running][0] == "paused" and states[running][1] > 0 and states[queued] == ("paused", 0)
    second = make_manager()
    assert {p.id: (p.state, p.done) for p in second.list()} == states
    # Asking for the same file again (e.g. the same CLI command) continues the paused download.
    hub.faults.slow.pop(F16)
    assert second.enqueue(GGUF_REPO, commit, [files[F16]]) == [running]
    [result] = second.wait([running], timeout=20)
    assert result.state == "done" and range_start(hub.file_requests(F16)[-1]) == states[running][1]


# -- verification and disk space ------------------------------------------------------------------
def test_wrong_bytes_are_reported_and_discarded(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    hub.faults.wrong_bytes[Q2K] = 1
    manager = make_manager()
    [download_id] = manager.enqueue(GGUF_REPO, commit, [files[Q2K]])
    [result] = manager.wait([download_id], timeout=20)
    assert result.state == "failed" and isinstance(manager.error(download_id), ChecksumMismatch)
    assert "SHA-256" in result.error and "discarded" in result.error
    cache = tmp_path / "hf-cache"
    assert not snapshot_files(cache) and not incomplete_files(cache)
    assert not list(cache.rglob("blobs/*"))
    assert try_to_load_from_cache(GGUF_REPO, Q2K, cache_dir=cache) is None
    manager.resume(download_id)  # the fault is spent: a second try gets good bytes
    assert manager.wait([download_id], timeout=20)[0].state == "done"


def test_not_enough_disk_space_is_said_before_downloading(populated_hub, make_manager, monkeypatch):
    import shutil

    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=50_000_000))
    manager = make_manager()
    with pytest.raises(DiskFull) as raised:
        manager.enqueue(GGUF_REPO, commit, [files[F16]])
    assert "disk space" in str(raised.value) and "Free some disk space" in str(raised.value)
    assert manager.list() == [] and not hub.file_requests(F16)


def test_disk_filling_up_while_writing_keeps_the_partial(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    manager = make_manager()
    written = 0

    def full_disk(fh, data):  # the disk fills up after 300 KB
        nonlocal written
        if written + len(data) > 300_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        fh.write(data)
        written += len(data)

    manager._write = full_disk
    [download_id] = manager.enqueue(GGUF_REPO, commit, [files[F16]])
    [result] = manager.wait([download_id], timeout=20)
    assert result.state == "failed" and isinstance(manager.error(download_id), DiskFull)
    assert "disk" in result.error.lower() and "Resume" in result.error
    [partial] = incomplete_files(tmp_path / "hf-cache")
    assert 0 < partial.stat().st_size <= 300_000 and result.done == partial.stat().st_size
    assert not snapshot_files(tmp_path / "hf-cache")

    del manager._write  # space was freed
    manager.resume(download_id)
    [result] = manager.wait([download_id], timeout=20)
    assert result.state == "done" and range_start(hub.file_requests(F16)[-1]) == written
    assert Path(result.local_path).read_bytes() == hub.repos[GGUF_REPO].files[F16].data


# -- access -----------------------------------------------------------------------------------------
def test_gated_repo_says_where_to_get_access(populated_hub, make_manager, tmp_path):
    hub = populated_hub
    commit, files = repo_files(hub, GATED, token=ALICE)
    manager = make_manager()
    [download_id] = manager.enqueue(GATED, commit, [files["Gated-Q4_0.gguf"]])
    [result] = manager.wait([download_id], timeout=20)
    error = manager.error(download_id)
    assert result.state == "failed" and isinstance(error, GatedRepo)
    assert error.url == f"{hub.url}/{GATED}" and result.url == error.url and GATED in result.error
    assert not snapshot_files(tmp_path / "hf-cache")

    with_token = make_manager(token=ALICE, cache_dir=tmp_path / "hf-cache", state_file=tmp_path / "other.json")
    [result] = with_token.wait(with_token.enqueue(GATED, commit, [files["Gated-Q4_0.gguf"]]), timeout=20)
    assert result.state == "done"
    assert hub.file_requests("Gated-Q4_0.gguf")[-1]["authorization"] == f"Bearer {ALICE}"


def test_invalid_token_is_named_but_never_shown(populated_hub, make_manager, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    bad = "hf_wrongtoken000000secret"
    manager = make_manager(token=bad)
    download_id, readme_id = manager.enqueue(GGUF_REPO, commit, [files[Q2K], files["README.md"]])
    result, readme = manager.wait([download_id, readme_id], timeout=20)
    assert result.state == "failed" and isinstance(manager.error(download_id), TokenInvalid)
    assert readme.state == "failed" and isinstance(manager.error(readme_id), TokenInvalid)  # asked with HEAD
    assert hub.file_requests(Q2K)[-1]["authorization"] == f"Bearer {bad}"  # it was sent, to the Hub only
    manager.shutdown()
    assert bad not in result.error + readme.error and bad not in str(manager.error(download_id))
    assert "token" in result.error.lower()
    state = (tmp_path / "home" / "downloads.json").read_text()
    assert Q2K in state and bad not in state
    assert bad not in caplog.text and bad not in repr(manager)


# -- the queue --------------------------------------------------------------------------------------
def test_parallel_limit_is_respected(populated_hub, make_manager):
    hub = populated_hub
    commit, files = repo_files(hub, GGUF_REPO)
    chosen = [files[Q2K], files[Q8], files[F16], files["README.md"]]
    for name in (Q2K, Q8, F16):
        hub.faults.slow[name] = 1_000_000
    manager = make_manager(max_parallel=2)
    ids = manager.enqueue(GGUF_REPO, commit, chosen)
    most = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = [p.state for p in manager.list()]
        most = max(most, sum(s in ("downloading", "verifying") for s in states))
        if all(s == "done" for s in states):
            break
        time.sleep(0.01)
    assert most == 2
    assert [p.state for p in manager.wait(ids, timeout=5)] == ["done"] * len(chosen)
