"""The download manager: a queue of Hub files fetched a few at a time, with progress, pause, resume (also
after a restart of the app), cancel, retries, SHA-256 verification and a disk-space check.

Files land in the standard Hugging Face cache (see ``hf_cache``): bytes grow in
``blobs/<sha256>.incomplete``, are hashed while they are written, and only a complete file whose
SHA-256 matches the Hub's is renamed to ``blobs/<sha256>`` and linked into ``snapshots/<commit>/``.

Threads: one worker thread per running download, started by the manager when a slot is free.
``on_progress`` is called from those threads (and from the caller's thread for instant changes such as
pausing a queued file) with immutable ``DownloadProgress`` snapshots; the GUI re-emits them as a Qt
signal. The queue is saved to a small JSON file (never the token) so a restarted app lists unfinished
downloads as paused and ``resume`` continues them from their partial bytes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpx2
from filelock import FileLock
from filelock import Timeout as LockTimeout
from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from desktop_llm import __version__
from desktop_llm.core.atomic_file import write_text_atomic
from desktop_llm.core.errors import (
    ChecksumMismatch,
    DesktopLLMError,
    DiskFull,
    DownloadError,
    GatedRepo,
    NoNetwork,
    RateLimited,
    error_from_code,
)
from desktop_llm.core.paths import app_home, hf_hub_cache
from desktop_llm.core.repo_files import RepoFile
from desktop_llm.core.units import format_bytes
from desktop_llm.hub import hf_cache
from desktop_llm.hub.client import hub_error

log = logging.getLogger(__name__)

QUEUED, DOWNLOADING, PAUSED, VERIFYING, DONE, FAILED, CANCELLED = (
    "queued", "downloading", "paused", "verifying", "done", "failed", "cancelled")
ACTIVE_STATES = (DOWNLOADING, VERIFYING)
# States in which nothing happens until someone acts: what ``wait`` waits for.
SETTLED_STATES = (DONE, FAILED, CANCELLED, PAUSED)

STATE_VERSION = 1
DISK_MARGIN = 100 * 1000 * 1000  # keep this much free beyond the download: the OS and other apps need room
PROGRESS_INTERVAL = 0.1  # seconds between progress events of one file (~10 a second)
# Connect and read timeouts: a stalled connection is retried (with Range) rather than waited on forever.
TIMEOUT = httpx2.Timeout(20.0, connect=10.0)
_MAX_BACKOFF = 10.0
_MAX_RETRY_AFTER = 60.0
_HASH_BLOCK = 4 << 20
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of one file's download, safe to hand to another thread."""

    id: str
    repo_id: str
    path: str
    state: str  # queued | downloading | paused | verifying | done | failed | cancelled
    done: int  # bytes on disk (kept accurate across pause, resume and restarts)
    total: int | None
    speed: float = 0.0  # bytes/s, smoothed
    eta: float | None = None  # seconds left at the current speed
    error: str | None = None  # for the user: what happened and what to do
    local_path: str | None = None  # the file in the HF cache's snapshots folder, once done
    commit: str = ""
    error_code: str | None = None  # DesktopLLMError.code of the failure
    url: str | None = None  # the page to open about the failure (a gated repo's terms)


class _Stopped(Exception):
    """The download was paused, cancelled or the manager is shutting down."""


class _Retry(Exception):
    """A passing failure: try again (after ``retry_after`` seconds when the server said)."""

    def __init__(self, error: DesktopLLMError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


@dataclass(eq=False)
class _Item:
    id: str
    repo_id: str
    commit: str  # a full commit hash once known; the revision asked for before that
    revision: str  # the branch the commit came from (refs/<revision> is written)
    path: str
    size: int | None
    sha256: str | None
    etag: str | None = None  # the blob name when the file has no LFS SHA-256 (git object id)
    state: str = QUEUED
    done: int = 0
    error: DesktopLLMError | None = None
    local_path: str | None = None
    speed: float = 0.0
    created: float = field(default_factory=time.time)
    # Worker-side fields (not saved).
    stop: str | None = None  # "pause" | "cancel" | "shutdown" asked of the running worker
    thread: threading.Thread | None = None
    sock: socket.socket | None = None  # the socket being read, to cut a stalled read short
    wake: threading.Event = field(default_factory=threading.Event)
    tick_time: float = 0.0
    tick_done: int = 0
    last_emit: float = 0.0

    @property
    def key(self) -> str | None:
        """The blob name: the LFS SHA-256, else the git object id the Hub sent as ETag."""
        return self.sha256 or self.etag

    @property
    def eta(self) -> float | None:
        if self.state != DOWNLOADING or self.size is None or self.speed <= 0:
            return None
        return max(0.0, (self.size - self.done) / self.speed)

    def snapshot(self) -> DownloadProgress:
        error = self.error
        return DownloadProgress(
            id=self.id, repo_id=self.repo_id, path=self.path, state=self.state, done=self.done, total=self.size,
            speed=self.speed if self.state == DOWNLOADING else 0.0, eta=self.eta,
            error=str(error) if error is not None else None, local_path=self.local_path, commit=self.commit,
            error_code=error.code if error is not None else None,
            url=getattr(error, "url", None) or None)

    def to_json(self) -> dict[str, Any]:
        # Everything needed to resume; deliberately no endpoint headers and no token.
        data: dict[str, Any] = {
            "id": self.id, "repo_id": self.repo_id, "commit": self.commit, "revision": self.revision,
            "path": self.path, "size": self.size, "sha256": self.sha256, "etag": self.etag, "state": self.state,
            "done": self.done, "created": self.created}
        if self.error is not None:
            data["error"] = {"code": self.error.code, "message": self.error.message, "hint": self.error.hint,
                             "url": getattr(self.error, "url", "")}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Item:
        item = cls(id=str(data["id"]), repo_id=str(data["repo_id"]), commit=str(data["commit"]),
                   revision=str(data.get("revision") or "main"), path=str(data["path"]),
                   size=_int_or_none(data.get("size")), sha256=data.get("sha256") or None,
                   etag=data.get("etag") or None, state=str(data.get("state") or PAUSED),
                   done=int(data.get("done") or 0), created=float(data.get("created") or time.time()))
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            if err.get("code") == GatedRepo.code:
                item.error = GatedRepo(err["message"], err.get("hint", ""), url=err.get("url", ""))
            else:
                item.error = error_from_code(str(err.get("code")), str(err["message"]), str(err.get("hint", "")))
        return item


class DownloadManager:
    """Downloads Hub files into the Hugging Face cache, ``max_parallel`` at a time.

    ``token_provider`` is asked for the token whenever a request starts, so a token set in Settings
    applies to the next resume. ``endpoint`` may be changed between downloads.
    """

    def __init__(self, endpoint: str, token_provider: Callable[[], str | None], cache_dir: Path | None = None,
                 state_file: Path | None = None, max_parallel: int = 2,
                 on_progress: Callable[[DownloadProgress], None] | None = None,
                 chunk_size: int = 1 << 20, retries: int = 5, backoff: float = 0.5) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token_provider = token_provider
        self.cache_dir = Path(cache_dir) if cache_dir is not None else hf_hub_cache()
        self.state_file = Path(state_file) if state_file is not None else app_home() / "downloads.json"
        self.max_parallel = max(1, int(max_parallel))
        self.on_progress = on_progress
        # Block size for hashing an existing partial file. Network bytes are taken as they arrive (64 KiB
        # reads): buffering them into bigger blocks measured no faster and would delay pause and cancel.
        self.chunk_size = chunk_size
        self.retries = max(0, int(retries))
        self.backoff = backoff  # first wait between tries (doubles each time, at most 10 s)
        self._items: dict[str, _Item] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._load()

    def __repr__(self) -> str:
        return f"DownloadManager(endpoint={self.endpoint!r}, cache_dir={str(self.cache_dir)!r})"

    # -- public API -----------------------------------------------------------------------------
    def enqueue(self, repo_id: str, commit: str, files: Sequence[RepoFile], revision: str = "main") -> list[str]:
        """Queue ``files`` of ``repo_id`` at ``commit``; returns one id per file, in order.

        A file already in the cache is done at once; one already queued or running keeps its id; a paused
        or failed one is resumed. Raises ``DiskFull`` (and queues nothing) when the disk cannot hold
        what is left to fetch.
        """
        if self._closed:
            raise DownloadError("The download manager has been shut down.", "Restart the app to download.")
        for f in files:
            try:
                hf_cache.safe_repo_path(f.path)
            except ValueError as exc:
                raise DownloadError(f"{repo_id} lists a file with an unsafe name ({f.path!r}); it was not downloaded.",
                                    "Report the repository to its owners.") from exc
        events: list[DownloadProgress] = []
        with self._lock:
            plan: list[tuple[RepoFile, _Item | None]] = []
            for f in files:
                existing = next((it for it in self._items.values() if (it.repo_id, it.commit, it.path) ==
                                 (repo_id, commit, f.path) and it.state not in (DONE, CANCELLED)), None)
                plan.append((f, existing))
            new_bytes = sum(self._remaining(repo_id, f) for f, existing in plan if existing is None)
            if new_bytes:
                self._check_disk(new_bytes + self._pending_bytes(), f"{repo_id}")
            ids = []
            for f, existing in plan:
                if existing is not None:
                    if existing.state in (PAUSED, FAILED):
                        self._requeue(existing)
                        events.append(existing.snapshot())
                    ids.append(existing.id)
                    continue
                item = _Item(id=uuid.uuid4().hex[:12], repo_id=repo_id, commit=commit,
                             revision=revision if hf_cache.is_full_commit(commit) else commit,
                             path=f.path, size=f.size, sha256=(f.sha256 or None))
                cached = hf_cache.cached_file(self.cache_dir, repo_id, commit, f.path)
                if cached is not None:
                    item.state, item.local_path = DONE, str(cached)
                    item.done = item.size = cached.stat().st_size
                else:
                    item.done = self._partial_size(item)
                self._items[item.id] = item
                events.append(item.snapshot())
                ids.append(item.id)
            self._save()
            self._schedule()
            self._changed.notify_all()
        self._emit_all(events)
        return ids

    def pause(self, id: str) -> None:  # noqa: A002 - the API's name for a download id
        """Stop a queued or running download, keeping its bytes for ``resume``."""
        with self._lock:
            item = self._items.get(id)
            if item is None:
                return
            if item.state == QUEUED:
                item.state = PAUSED
                self._save()
                self._changed.notify_all()
                snapshot = item.snapshot()
            elif item.thread is not None and item.stop != "cancel":
                item.stop = "pause"
                self._interrupt(item)
                return
            else:
                return
        self._emit_all([snapshot])

    def resume(self, id: str) -> None:  # noqa: A002
        """Continue a paused or failed download from its partial bytes (a cancelled one starts over)."""
        with self._lock:
            item = self._items.get(id)
            if item is None or self._closed:
                return
            if item.thread is not None:
                if item.stop == "pause":
                    item.stop = None  # the worker has not stopped yet: it re-queues itself when it does
                return
            if item.state not in (PAUSED, FAILED, CANCELLED):
                return
            self._requeue(item)
            self._save()
            self._schedule()
            snapshot = item.snapshot()
        self._emit_all([snapshot])

    def cancel(self, id: str) -> None:  # noqa: A002
        """Stop a download and delete its partial bytes (a finished file is left alone)."""
        with self._lock:
            item = self._items.get(id)
            if item is None or item.state in (DONE, CANCELLED):
                return
            if item.thread is not None:
                item.stop = "cancel"
                self._interrupt(item)
                return
            self._discard_partial(item)
            item.state, item.done, item.error, item.speed = CANCELLED, 0, None, 0.0
            self._save()
            self._changed.notify_all()
            snapshot = item.snapshot()
        self._emit_all([snapshot])

    def list(self) -> list[DownloadProgress]:  # noqa: A003
        """Every download of this session and the unfinished ones of earlier sessions, oldest first."""
        with self._lock:
            return [item.snapshot() for item in self._items.values()]

    def get(self, id: str) -> DownloadProgress | None:  # noqa: A002
        with self._lock:
            item = self._items.get(id)
            return item.snapshot() if item is not None else None

    def error(self, id: str) -> DesktopLLMError | None:  # noqa: A002
        """Why a download failed, as the error object (``DownloadProgress.error`` is its text)."""
        with self._lock:
            item = self._items.get(id)
            return item.error if item is not None else None

    def wait(self, ids: Iterable[str] | None = None, timeout: float | None = None) -> list[DownloadProgress]:
        """Block until the downloads are done, failed, cancelled or paused; their final snapshots.

        Raises ``TimeoutError`` after ``timeout`` seconds. For the CLI and tests; the GUI listens instead.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            wanted = list(self._items) if ids is None else list(ids)
            while True:
                items = [self._items[i] for i in wanted if i in self._items]
                if all(it.state in SETTLED_STATES and it.thread is None for it in items):
                    return [it.snapshot() for it in items]
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"downloads still running after {timeout} s")
                self._changed.wait(0.5 if left is None else min(left, 0.5))

    def set_max_parallel(self, n: int) -> None:
        """How many files download at once; running ones finish even when the limit drops."""
        with self._lock:
            self.max_parallel = max(1, int(n))
            self._schedule()

    def clear_finished(self) -> None:
        """Forget done and cancelled downloads (the files stay in the cache)."""
        with self._lock:
            for key in [k for k, it in self._items.items() if it.state in (DONE, CANCELLED) and it.thread is None]:
                del self._items[key]
            self._save()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker; running and queued downloads become paused with their bytes kept, so the
        next start lists them and ``resume`` continues them."""
        with self._lock:
            self._closed = True
            threads = []
            for item in self._items.values():
                if item.thread is not None:
                    if item.stop != "cancel":
                        item.stop = "shutdown"
                    self._interrupt(item)
                    threads.append(item.thread)
                elif item.state == QUEUED:
                    item.state = PAUSED
            self._save()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._save()
            self._changed.notify_all()

    # -- scheduling -----------------------------------------------------------------------------
    def _requeue(self, item: _Item) -> None:
        item.state, item.error, item.speed, item.stop = QUEUED, None, 0.0, None
        item.done = self._partial_size(item)
        self._changed.notify_all()

    def _schedule(self) -> None:
        """Start queued downloads while slots are free (called with the lock held)."""
        if self._closed:
            return
        running = sum(1 for it in self._items.values() if it.thread is not None)
        busy_blobs = {(it.repo_id, it.key) for it in self._items.values() if it.thread is not None and it.key}
        for item in self._items.values():
            if running >= self.max_parallel:
                break
            if item.state != QUEUED or item.thread is not None or (item.key and (item.repo_id, item.key) in busy_blobs):
                continue
            item.state, item.stop = DOWNLOADING, None
            item.wake.clear()
            item.thread = threading.Thread(target=self._run, args=(item,), name=f"download-{item.id}", daemon=True)
            running += 1
            if item.key:
                busy_blobs.add((item.repo_id, item.key))
            item.thread.start()
        self._changed.notify_all()

    def _run(self, item: _Item) -> None:
        """A worker thread: one file, start to finish."""
        self._emit(item)
        error: DesktopLLMError | None = None
        stopped = False
        try:
            self._download(item)
        except _Stopped:
            stopped = True
        except DesktopLLMError as exc:
            error = exc
        except Exception as exc:  # a bug must not leave the download hanging in "downloading"
            log.exception("Download of %s/%s failed", item.repo_id, item.path)
            error = DownloadError(f"Downloading {item.path} failed unexpectedly ({type(exc).__name__}).",
                                  "Press Resume to try again; if it keeps failing, report it.")
        with self._lock:
            item.thread, item.sock, item.speed = None, None, 0.0
            if stopped or (item.stop is not None and item.state != DONE):
                if item.stop == "cancel":
                    self._discard_partial(item)
                    item.state, item.done, item.error = CANCELLED, 0, None
                elif item.stop is None and not self._closed:
                    self._requeue(item)  # resumed while it was stopping
                else:
                    item.state = PAUSED
                    item.done = self._partial_size(item)
            elif error is not None:
                item.state, item.error = FAILED, error
                if isinstance(error, ChecksumMismatch):
                    self._discard_partial(item)  # damaged bytes are never resumed
                item.done = self._partial_size(item)  # other failures keep the bytes for a resume
                log.info("Download of %s/%s failed: %s", item.repo_id, item.path, error.message)
            item.stop = None
            self._save()
            self._schedule()
            self._changed.notify_all()
            snapshot = item.snapshot()
        self._emit_snapshot(snapshot)

    # -- one file -------------------------------------------------------------------------------
    def _download(self, item: _Item) -> None:
        storage = hf_cache.repo_folder(self.cache_dir, item.repo_id)
        if self._finish_if_cached(item, storage):
            return
        if item.key is None or not hf_cache.is_full_commit(item.commit):
            self._with_retries(item, lambda: self._head(item))  # learn the blob name (and the commit)
            if self._finish_if_cached(item, storage):
                return
        key = item.key
        assert key is not None
        with self._file_lock(item, key):
            blob = hf_cache.blob_path(storage, key)
            new_blob = not blob.exists()
            if new_blob:
                self._fetch(item, storage, key)
            pointer = hf_cache.pointer_path(storage, item.commit, item.path)
            hf_cache.link_pointer(blob, pointer, new_blob=new_blob)
        hf_cache.write_ref(storage, item.revision, item.commit)
        self._set_done(item, pointer)

    def _finish_if_cached(self, item: _Item, storage: Path) -> bool:
        """Done without a byte fetched when the snapshot entry or the blob is already there."""
        if not hf_cache.is_full_commit(item.commit):
            return False
        pointer = hf_cache.cached_file(self.cache_dir, item.repo_id, item.commit, item.path)
        if pointer is None and item.key is not None:
            blob = hf_cache.blob_path(storage, item.key)
            if blob.exists():  # e.g. the same file in another commit, or fetched by another tool
                pointer = hf_cache.pointer_path(storage, item.commit, item.path)
                hf_cache.link_pointer(blob, pointer, new_blob=False)
        if pointer is None:
            return False
        hf_cache.write_ref(storage, item.revision, item.commit)
        self._set_done(item, pointer)
        return True

    def _set_done(self, item: _Item, pointer: Path) -> None:
        with self._lock:
            item.local_path = str(pointer)
            item.size = item.done = pointer.stat().st_size
            item.state, item.error = DONE, None
        log.info("Downloaded %s/%s", item.repo_id, item.path)

    @contextlib.contextmanager
    def _file_lock(self, item: _Item, key: str) -> Iterator[None]:
        """The lock huggingface_hub takes for the same blob: two programs never write one partial file."""
        path = hf_cache.lock_path(self.cache_dir, item.repo_id, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        while True:
            try:
                lock.acquire(timeout=0.2)
                break
            except LockTimeout:
                self._check_stop(item)
        try:
            yield
        finally:
            lock.release()

    def _fetch(self, item: _Item, storage: Path, key: str) -> None:
        """Bytes into ``blobs/<key>.incomplete`` (continuing what is there), verified, renamed to the blob."""
        partial = hf_cache.incomplete_path(storage, key)
        partial.parent.mkdir(parents=True, exist_ok=True)
        have = partial.stat().st_size if partial.exists() else 0
        if item.size is not None and have > item.size:
            partial.unlink()  # longer than the file: not ours to trust
            have = 0
        if item.size is not None:
            self._check_disk(item.size - have, item.path)
        hasher = hashlib.sha256()
        if have:
            self._hash_existing(item, partial, hasher)
        try:
            with open(partial, "ab") as fh:
                with self._lock:
                    item.done, item.state = have, DOWNLOADING
                self._emit(item)
                self._with_retries(item, lambda: self._get(item, fh, hasher))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise self._disk_full(item) from exc
            raise
        self._check_stop(item)
        with self._lock:
            item.state = VERIFYING
        self._emit(item, force=True)
        self._verify(item, partial, hasher)
        os.replace(partial, hf_cache.blob_path(storage, key))  # atomic: a blob is always whole

    def _hash_existing(self, item: _Item, partial: Path, hasher: Any) -> None:
        """Hash the bytes a paused download left, so the whole file is verified when it completes."""
        with self._lock:
            item.state, item.done = VERIFYING, partial.stat().st_size
        self._emit(item, force=True)
        with open(partial, "rb") as fh:
            while chunk := fh.read(max(self.chunk_size, _HASH_BLOCK)):
                hasher.update(chunk)
                self._check_stop(item)

    def _verify(self, item: _Item, partial: Path, hasher: Any) -> None:
        size = partial.stat().st_size
        name = f"{item.path} of {item.repo_id}"
        if item.size is not None and size != item.size:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{name} arrived with {format_bytes(size)} instead of {format_bytes(item.size)};"
                                   " the bytes were discarded.", "Press Resume to download it again.")
        if item.sha256 is not None:
            ok = hasher.hexdigest() == item.sha256
        elif hf_cache.is_git_sha1(item.etag):
            ok = hf_cache.git_blob_sha1(partial) == item.etag  # a small file kept in git: its object id
        else:
            ok = True  # the Hub gave nothing to check against (only the size above)
        if not ok:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{name} did not match the checksum the Hub lists (SHA-256), so it was damaged on the way; "
                "the bytes were discarded.", "Press Resume to download it again.")

    # -- HTTP -----------------------------------------------------------------------------------
    def _url(self, item: _Item) -> str:
        return hf_hub_url(item.repo_id, item.path, revision=item.commit, endpoint=self.endpoint)

    def _token(self) -> str | None:
        try:
            return self.token_provider() or None
        except Exception as exc:  # a broken keyring must not stop public downloads
            log.warning("Could not read the Hub token (%s); downloading without it", type(exc).__name__)
            return None

    def _headers(self, token: str | None, extra: dict[str, str]) -> dict[str, str]:
        headers = build_hf_headers(token=token if token else False, library_name="desktop-llm",
                                   library_version=__version__)
        headers["Accept-Encoding"] = "identity"  # Range offsets and sizes are of the bytes on disk
        headers.update(extra)
        return headers

    def _head(self, item: _Item) -> None:
        """Metadata only: the blob name (ETag), size and commit, as huggingface_hub asks before a download."""
        token = self._token()
        try:
            # Redirects are followed (a renamed repo); _learn prefers the first hop's X-Linked-Etag.
            response = get_session().head(self._url(item), headers=self._headers(token, {}), timeout=TIMEOUT,
                                          follow_redirects=True)
            self._check_status(item, response, token)
        except (_Retry, _Stopped, DesktopLLMError):
            raise
        except Exception as exc:
            raise self._map_exception(item, exc, token) from exc
        self._learn(item, response)

    def _get(self, item: _Item, fh: BinaryIO, hasher: Any) -> None:
        """One try: stream the rest of the file into ``fh`` (appending at ``item.done``)."""
        self._check_stop(item)
        offset = item.done
        token = self._token()
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with get_session().stream("GET", self._url(item), headers=self._headers(token, extra),
                                      timeout=TIMEOUT) as response:
                if response.status_code == 416 and offset:
                    if item.size is not None and offset >= item.size:
                        return  # the partial already holds every byte
                    self._restart(item, fh, hasher)
                    raise _Retry(DownloadError(f"The Hub refused to continue {item.path}.", "Press Resume."), 0)
                self._check_status(item, response, token)
                self._learn(item, response)
                if offset and response.status_code == 200:
                    self._restart(item, fh, hasher)  # the server ignored the Range: start over
                elif offset and not _range_starts_at(response, offset):
                    self._restart(item, fh, hasher)
                    raise _Retry(DownloadError(f"The Hub sent the wrong part of {item.path}.", "Press Resume."), 0)
                self._watch_socket(item, response)
                try:
                    self._receive(item, response, fh, hasher)
                finally:
                    with self._lock:
                        item.sock = None
        except (_Retry, _Stopped, DesktopLLMError):
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise self._disk_full(item) from exc
            if item.stop is not None:
                raise _Stopped from exc
            raise self._map_exception(item, exc, token) from exc
        except Exception as exc:
            if item.stop is not None:
                raise _Stopped from exc  # the read was cut short on purpose
            raise self._map_exception(item, exc, token) from exc
        if item.size is not None and item.done < item.size:
            raise _Retry(self._dropped_error(item))  # the server closed the stream early

    def _receive(self, item: _Item, response: httpx2.Response, fh: BinaryIO, hasher: Any) -> None:
        # Hash in the same loop as the write: hashlib releases the GIL on big buffers, so this costs
        # little next to the network; one pass over the bytes, no second read of the file.
        write = self._write
        for chunk in response.iter_bytes():
            if item.stop is not None:
                raise _Stopped
            write(fh, chunk)
            hasher.update(chunk)
            item.done += len(chunk)
            if item.size is not None and item.done > item.size:
                raise ChecksumMismatch(f"The Hub sent more bytes of {item.path} than it lists; they were discarded.",
                                       "Press Resume to download it again.")
            now = time.monotonic()
            if now - item.tick_time >= PROGRESS_INTERVAL:
                self._tick(item, now)

    def _write(self, fh: BinaryIO, data: bytes) -> None:
        """Write a chunk (tests replace this to simulate a full disk)."""
        fh.write(data)

    def _tick(self, item: _Item, now: float) -> None:
        elapsed = now - item.tick_time
        if item.tick_time and elapsed > 0:
            current = (item.done - item.tick_done) / elapsed
            # Exponential smoothing (~1 s memory at 10 updates a second): a steady figure for speed and ETA.
            item.speed = current if item.speed <= 0 else 0.8 * item.speed + 0.2 * current
        item.tick_time, item.tick_done = now, item.done
        self._emit(item)

    def _restart(self, item: _Item, fh: BinaryIO, hasher: Any) -> None:
        fh.seek(0)
        fh.truncate()
        hasher.__init__()  # a fresh SHA-256 state
        item.done = 0

    def _watch_socket(self, item: _Item, response: httpx2.Response) -> None:
        """Remember the socket so pause and cancel can wake a read blocked on a stalled connection."""
        stream = response.extensions.get("network_stream")
        sock = None
        with contextlib.suppress(Exception):
            sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            item.sock = sock if isinstance(sock, socket.socket) else None
            if item.stop is not None:
                raise _Stopped

    def _interrupt(self, item: _Item) -> None:
        """Wake a worker now (called with the lock held): from a back-off sleep or a blocked read."""
        item.wake.set()
        if item.sock is not None:
            with contextlib.suppress(OSError):
                item.sock.shutdown(socket.SHUT_RDWR)

    def _check_stop(self, item: _Item) -> None:
        if item.stop is not None:
            raise _Stopped

    def _learn(self, item: _Item, response: httpx2.Response) -> None:
        """File facts from the Hub's headers (also those of a redirect to a CDN)."""
        headers: dict[str, str] = {}
        for r in [*response.history, response]:
            for name in ("X-Linked-Etag", "ETag", "X-Repo-Commit", "X-Linked-Size"):
                if name not in headers and r.headers.get(name):
                    headers[name] = r.headers[name]
        etag = _clean_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        commit = headers.get("X-Repo-Commit", "")
        with self._lock:
            if item.sha256 is None and hf_cache.is_sha256(etag):
                item.sha256 = etag
            elif item.sha256 is None and item.etag is None and etag:
                item.etag = etag
            if not hf_cache.is_full_commit(item.commit) and hf_cache.is_full_commit(commit):
                item.commit = commit
            if item.size is None:
                item.size = _total_size(response) or _int_or_none(headers.get("X-Linked-Size"))
        if item.key is None:
            raise DownloadError(f"The Hub did not say which version of {item.path} it is sending (no ETag).",
                                "Check the Hub address in Settings points to the Hugging Face Hub or a mirror.")

    def _check_status(self, item: _Item, response: httpx2.Response, token: str | None) -> None:
        status = response.status_code
        if status < 400:
            return
        if status in _RETRY_STATUSES:
            wait = _retry_after(response.headers.get("Retry-After")) if status == 429 else None
            if status == 429:
                error: DesktopLLMError = RateLimited(
                    "The Hub is limiting how many downloads this computer makes.",
                    "Wait a few minutes, then press Resume (the downloaded part is kept).")
            else:
                error = DownloadError(f"The Hub at {self.endpoint} had a problem sending {item.path} "
                                      f"(error {status}).", "Try again in a few minutes with Resume "
                                      "(the downloaded part is kept).")
            raise _Retry(error, wait)
        if response.request.method != "HEAD":
            with contextlib.suppress(Exception):
                response.read()  # error bodies are small; the message is in them
        try:
            hf_raise_for_status(response)
        except Exception as exc:
            raise self._map_exception(item, exc, token) from exc
        raise DownloadError(f"The Hub answered {status} for {item.path}.", "Press Resume to try again.")

    def _map_exception(self, item: _Item, exc: BaseException, token: str | None) -> DesktopLLMError | _Retry:
        if isinstance(exc, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
            return _Retry(self._dropped_error(item, exc))
        mapped = hub_error(exc, endpoint=self.endpoint, repo_id=item.repo_id, authenticated=token is not None)
        if mapped is None:
            return DownloadError(f"Downloading {item.path} of {item.repo_id} failed ({type(exc).__name__}).",
                                 "Press Resume to try again.")
        return mapped

    def _dropped_error(self, item: _Item, exc: BaseException | None = None) -> DesktopLLMError:
        if isinstance(exc, httpx2.ConnectError) and not item.done:
            return NoNetwork(f"Cannot reach the Hub at {self.endpoint}.",
                             "Check your internet connection (and the Hub address in Settings), then press Resume.")
        have = f" after {format_bytes(item.done)}" if item.done else ""
        return NoNetwork(f"The connection to the Hub kept dropping while downloading {item.path}{have}.",
                         "The downloaded part is kept: check your internet connection, then press Resume.")

    def _with_retries(self, item: _Item, attempt: Callable[[], None]) -> None:
        """Run ``attempt`` until it succeeds, backing off after passing failures; a try that made
        progress resets the count, so a long download survives many short outages."""
        failures = 0
        while True:
            self._check_stop(item)
            before = item.done
            item.tick_time, item.tick_done = time.monotonic(), item.done
            try:
                attempt()
                return
            except _Retry as retry:
                if item.done > before:
                    failures = 0
                failures += 1
                if failures > self.retries:
                    raise retry.error from retry
                wait = retry.retry_after
                if wait is None:
                    wait = min(_MAX_BACKOFF, self.backoff * 2 ** (failures - 1))
                log.info("Retrying %s/%s in %.1f s (%s)", item.repo_id, item.path, wait, retry.error.message)
                if wait > 0:
                    item.wake.wait(wait)
                    item.wake.clear()

    # -- disk -----------------------------------------------------------------------------------
    def _partial_size(self, item: _Item) -> int:
        if item.key is None:
            return 0
        partial = hf_cache.incomplete_path(hf_cache.repo_folder(self.cache_dir, item.repo_id), item.key)
        try:
            return partial.stat().st_size
        except OSError:
            return 0

    def _discard_partial(self, item: _Item) -> None:
        """Delete the item's partial bytes (lock held), unless another running download writes them."""
        if item.key is None:
            return
        if any(it is not item and it.thread is not None and (it.repo_id, it.key) == (item.repo_id, item.key)
               for it in self._items.values()):
            return
        partial = hf_cache.incomplete_path(hf_cache.repo_folder(self.cache_dir, item.repo_id), item.key)
        with contextlib.suppress(OSError):
            partial.unlink()

    def _remaining(self, repo_id: str, f: RepoFile) -> int:
        if f.size is None:
            return 0
        storage = hf_cache.repo_folder(self.cache_dir, repo_id)
        if f.sha256:
            if hf_cache.blob_path(storage, f.sha256).exists():
                return 0
            partial = hf_cache.incomplete_path(storage, f.sha256)
            if partial.exists():
                return max(0, f.size - partial.stat().st_size)
        return f.size

    def _pending_bytes(self) -> int:
        """What queued and running downloads still need (called with the lock held)."""
        return sum(max(0, (it.size or 0) - it.done) for it in self._items.values()
                   if it.state in (QUEUED, DOWNLOADING, VERIFYING))

    def _check_disk(self, need: int, what: str) -> None:
        folder = self.cache_dir
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent  # the cache may not exist yet: ask about the drive it will be on
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return  # cannot tell: let the download find out
        if free < need + DISK_MARGIN:
            raise DiskFull(f"Not enough disk space for {what}: it needs {format_bytes(need)} more (plus "
                           f"{format_bytes(DISK_MARGIN)} to spare) and {format_bytes(free)} is free in "
                           f"{self.cache_dir}.",
                           "Free some disk space (or choose another models folder), then try again.")

    def _disk_full(self, item: _Item) -> DiskFull:
        return DiskFull(f"The disk filled up while downloading {item.path} ({format_bytes(item.done)} saved).",
                        f"Free some disk space in {self.cache_dir}, then press Resume to continue where it stopped.")

    # -- events ---------------------------------------------------------------------------------
    def _emit(self, item: _Item, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - item.last_emit < PROGRESS_INTERVAL * 0.5 and item.state == DOWNLOADING:
            return
        item.last_emit = now
        with self._lock:
            snapshot = item.snapshot()
            self._changed.notify_all()
        self._emit_snapshot(snapshot)

    def _emit_all(self, snapshots: Sequence[DownloadProgress]) -> None:
        for snapshot in snapshots:
            self._emit_snapshot(snapshot)

    def _emit_snapshot(self, snapshot: DownloadProgress) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(snapshot)
        except Exception:  # a listener's bug must not break the download
            log.exception("Download progress listener failed")

    # -- state file -----------------------------------------------------------------------------
    def _load(self) -> None:
        """Unfinished downloads of an earlier session come back paused, with the bytes on disk counted."""
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("Ignoring an unreadable download list %s: %s", self.state_file, exc)
            return
        entries = data.get("downloads", []) if isinstance(data, dict) else []
        for entry in entries:
            try:
                item = _Item.from_json(entry)
            except (KeyError, TypeError, ValueError):
                continue
            if item.state in (DONE, CANCELLED):
                continue
            if item.state != FAILED:
                item.state = PAUSED
            item.done = self._partial_size(item)
            self._items[item.id] = item

    def _save(self) -> None:
        """Write the queue atomically (called with the lock held). Finished downloads are not kept."""
        entries = [it.to_json() for it in self._items.values() if it.state not in (DONE, CANCELLED)]
        body = json.dumps({"version": STATE_VERSION, "downloads": entries}, indent=1)
        try:
            write_text_atomic(self.state_file, body)
        except OSError as exc:  # a full disk must not turn into a crash here
            log.warning("Could not save the download list %s: %s", self.state_file, exc)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _clean_etag(etag: str | None) -> str | None:
    if not etag:
        return None
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"') or None


def _total_size(response: httpx2.Response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        return _int_or_none(content_range.rsplit("/", 1)[1])
    if response.status_code == 200:  # the whole file, not compressed (Accept-Encoding: identity)
        return _int_or_none(response.headers.get("Content-Length"))
    return None


def _range_starts_at(response: httpx2.Response, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(content_range.split()[1].split("-")[0]) == offset
    except (IndexError, ValueError):
        return False


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(_MAX_RETRY_AFTER, seconds))

