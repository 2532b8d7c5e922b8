"""A Hugging Face Hub look-alike on 127.0.0.1, for tests and benches.

It answers what the real ``huggingface_hub`` client and the app's downloader ask:

- ``GET /api/models`` (search, filter, sort, direction, limit, ``Link`` paging),
- ``GET /api/models/{repo}[/revision/{rev}]`` (siblings with sizes and LFS SHA-256),
- ``HEAD|GET /{repo}/resolve/{rev}/{file}`` (ETag, X-Repo-Commit, X-Linked-*, ``Range``),
- ``GET /api/whoami-v2``,

with the Hub's error headers (``X-Error-Code``: RepoNotFound, GatedRepo, EntryNotFound) and
faults a test can arm: a connection dropped mid-file, wrong bytes served, rate limiting, a slow
file. Files are bytes in memory or a path on disk (for the 500 MB bench file).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 1 << 20


@dataclass
class FakeFile:
    name: str
    data: bytes | None = None
    path: Path | None = None
    lfs: bool = True
    sha256: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        if self.path is not None:
            self.size = self.path.stat().st_size
            h = hashlib.sha256()
            with open(self.path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
            self.sha256 = h.hexdigest()
        else:
            assert self.data is not None
            self.size = len(self.data)
            self.sha256 = hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % self.size + (self.data or b"")).hexdigest()

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end)."""
        if self.data is not None:
            return self.data[start:end]
        with open(self.path, "rb") as fh:  # type: ignore[arg-type]
            fh.seek(start)
            return fh.read(end - start)


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool | str = False
    private: bool = False
    license: str = "apache-2.0"
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    pipeline_tag: str | None = "text-generation"
    commit: str = ""
    gguf: dict | None = None

    def __post_init__(self) -> None:
        self.commit = self.commit or hashlib.sha1(self.repo_id.encode()).hexdigest()

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def all_tags(self) -> list[str]:
        tags = list(self.tags)
        if any(n.endswith(".gguf") for n in self.files):
            tags.append("gguf")
        if any(n.endswith(".safetensors") for n in self.files):
            tags.append("safetensors")
        tags.append(f"license:{self.license}")
        return tags

    def summary(self) -> dict:
        return {
            "_id": self.commit[:24], "id": self.repo_id, "modelId": self.repo_id, "author": self.author,
            "downloads": self.downloads, "likes": self.likes, "lastModified": self.last_modified,
            "createdAt": self.last_modified, "private": self.private, "gated": self.gated,
            "tags": self.all_tags(), "library_name": self.library_name, "pipeline_tag": self.pipeline_tag,
        }

    def info(self, blobs: bool) -> dict:
        siblings = []
        for f in self.files.values():
            sib: dict = {"rfilename": f.name}
            if blobs:
                sib["size"] = f.size
                sib["blobId"] = f.git_sha1
                if f.lfs:
                    sib["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(sib)
        info = {**self.summary(), "sha": self.commit, "siblings": siblings,
                "cardData": {"license": self.license, "tags": self.tags}, "disabled": False}
        if self.gguf is not None:
            info["gguf"] = self.gguf
        return info


@dataclass
class Faults:
    """Armed faults; each fires ``times`` times, then is spent."""

    drop_after: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (bytes, times)
    wrong_bytes: dict[str, int] = field(default_factory=dict)  # file -> times
    rate_limited: int = 0  # the next n API requests get 429
    slow: dict[str, float] = field(default_factory=dict)  # file -> bytes per second
    ignore_range: bool = False  # answer 200 with the whole file even when a Range was asked
    # file -> (status, times): a GET of its bytes is answered with this error (429 says Retry-After: 1)
    http_error: dict[str, tuple[int, int]] = field(default_factory=dict)


class FakeHub:
    """Start with ``with FakeHub() as hub:`` or ``start()``/``stop()``; ``hub.url`` is the endpoint."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: dict[str, str] = {}  # token -> user name
        self.access: set[tuple[str, str]] = set()  # (token, repo_id) granted for gated repos
        self.faults = Faults()
        self.requests: list[dict] = []  # method, path, range, authorization (for assertions)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # -- content ------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], *, lfs: set[str] | None = None,
                 **fields) -> FakeRepo:
        """Add a model repo. Files ending .gguf/.safetensors/.bin are LFS unless ``lfs`` says otherwise."""
        repo = FakeRepo(repo_id, **fields)
        for name, content in files.items():
            is_lfs = name.endswith((".gguf", ".safetensors", ".bin")) if lfs is None else name in lfs
            if isinstance(content, Path):
                repo.files[name] = FakeFile(name, path=content, lfs=is_lfs)
            else:
                repo.files[name] = FakeFile(name, data=content, lfs=is_lfs)
        self.repos[repo_id] = repo
        return repo

    def add_user(self, token: str, name: str, *, gated_access: tuple[str, ...] = ()) -> None:
        self.tokens[token] = name
        for repo_id in gated_access:
            self.access.add((token, repo_id))

    # -- life ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the FakeHub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def file_requests(self, name: str) -> list[dict]:
        """Requests for the bytes of file ``name`` (GET on its resolve URL)."""
        return [r for r in self.requests if r["method"] == "GET" and r["path"].endswith("/" + name)
                and "/resolve/" in r["path"]]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.fake._conns.add(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client hung up between requests (it read only the start of a file): not a server error

    def finish(self) -> None:
        self.fake._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- helpers ------------------------------------------------------------------------------
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.startswith("Bearer ") else None

    def _send_json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send_json(status, {"error": message}, headers)

    def _bad_token(self) -> bool:
        """True (and answered 401) when a token was sent that the Hub does not know."""
        token = self._token()
        if token is not None and token not in self.fake.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return True
        return False

    # -- dispatch -----------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        with self.fake._lock:
            self.fake.requests.append({"method": self.command, "path": path, "range": self.headers.get("Range"),
                                       "authorization": self.headers.get("Authorization")})
        try:
            if path.startswith("/api/"):
                if self.fake.faults.rate_limited > 0:
                    self.fake.faults.rate_limited -= 1
                    self._error(429, None, "You have been rate-limited; try again later.")
                    return
                if self._bad_token():
                    return
                if path == "/api/whoami-v2":
                    self._whoami()
                elif path == "/api/models":
                    self._search(query)
                elif path.startswith("/api/models/"):
                    self._info(path[len("/api/models/"):], query)
                else:
                    self._error(404, None, "Not found")
            elif "/resolve/" in path:
                if self._bad_token():
                    return
                self._resolve(path)
            else:
                self._error(404, None, "Not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- endpoints ----------------------------------------------------------------------------
    def _whoami(self) -> None:
        token = self._token()
        if token is None:
            self._error(401, None, "Invalid credentials in Authorization header")
            return
        name = self.fake.tokens[token]
        self._send_json(200, {"type": "user", "id": name, "name": name, "fullname": name.title(),
                              "orgs": [], "auth": {"type": "access_token",
                                                   "accessToken": {"displayName": "desktop", "role": "read"}}})

    def _search(self, query: dict[str, list[str]]) -> None:
        repos = list(self.fake.repos.values())
        text = (query.get("search") or [""])[0].lower()
        if text:
            repos = [r for r in repos if text in r.repo_id.lower()]
        for author in query.get("author", []):
            repos = [r for r in repos if r.author == author]
        for flt in query.get("filter", []):
            for tag in flt.split(","):
                repos = [r for r in repos if tag in r.all_tags() or tag == r.library_name]
        sort = (query.get("sort") or [""])[0]
        key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
               "lastModified": lambda r: r.last_modified, "last_modified": lambda r: r.last_modified,
               "createdAt": lambda r: r.last_modified, "created_at": lambda r: r.last_modified}.get(sort)
        if key is not None:
            direction = (query.get("direction") or ["-1"])[0]
            repos.sort(key=key, reverse=direction != "1")
        limit = int((query.get("limit") or ["1000"])[0])
        offset = int((query.get("cursor") or ["0"])[0])
        page = repos[offset:offset + limit]
        headers = {}
        if offset + limit < len(repos):
            rest = {k: v for k, v in query.items() if k != "cursor"}
            qs = "&".join(f"{k}={quote(x)}" for k, vs in rest.items() for x in vs)
            headers["Link"] = f'<{self.fake.url}/api/models?{qs}&cursor={offset + limit}>; rel="next"'
        self._send_json(200, [r.summary() for r in page], headers)

    def _info(self, rest: str, query: dict[str, list[str]]) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        repo = self.fake.repos.get(repo_id)
        if repo is None or (repo.private and self._token() is None):
            self._error(404, "RepoNotFound", "Repository not found")
            return
        if revision and revision not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        self._send_json(200, repo.info(blobs=(query.get("blobs") or [""])[0] in ("true", "True", "1")))

    def _resolve(self, path: str) -> None:
        head, _, filename = path.partition("/resolve/")
        repo = self.fake.repos.get(head.lstrip("/"))
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        revision, _, filename = filename.partition("/")
        if revision not in ("main", repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        token = self._token()
        if repo.gated and (token, repo.repo_id) not in self.fake.access:
            message = (f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in.") if token is None else (
                       f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                       f"Visit {self.fake.url}/{repo.repo_id} to ask for access.")
            self._error(401 if token is None else 403, "GatedRepo", message)
            return
        file = repo.files.get(filename)
        if file is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"")
            return
        if self.command == "GET" and self._http_error_fault(file.name):
            return
        etag = f'"{file.sha256 if file.lfs else file.git_sha1}"'
        start, end = 0, file.size
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and not self.fake.faults.ignore_range:
            first, _, last = rng[6:].partition("-")
            start = int(first or 0)
            end = min(int(last) + 1, file.size) if last else file.size  # a range past the end is clamped (RFC 9110)
            if start >= file.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{file.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", repo.commit)
        if file.lfs:
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(file.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{file.size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        self._send_body(file, start, end)

    def _http_error_fault(self, name: str) -> bool:
        """Answer with the armed ``http_error`` fault for this file, if any (True when it did)."""
        with self.fake._lock:
            status, times = self.fake.faults.http_error.get(name, (0, 0))
            if times <= 0:
                return False
            if times == 1:
                del self.fake.faults.http_error[name]
            else:
                self.fake.faults.http_error[name] = (status, times - 1)
        headers = {"X-Error-Message": f"Error {status}"}
        if status == 429:
            headers["Retry-After"] = "1"
        self._send_json(status, {"error": f"Error {status}"}, headers)
        return True

    def _send_body(self, file: FakeFile, start: int, end: int) -> None:
        faults = self.fake.faults
        drop_at = None
        with self.fake._lock:
            if file.name in faults.drop_after:
                nbytes, times = faults.drop_after[file.name]
                drop_at = start + nbytes
                if times <= 1:
                    del faults.drop_after[file.name]
                else:
                    faults.drop_after[file.name] = (nbytes, times - 1)
            corrupt = faults.wrong_bytes.get(file.name, 0) > 0
            if corrupt:
                faults.wrong_bytes[file.name] -= 1
        rate = faults.slow.get(file.name)
        pos = start
        step = CHUNK if rate is None else max(1, min(CHUNK, int(rate / 20)))
        if file.path is not None and drop_at is None and not corrupt and rate is None:
            with open(file.path, "rb") as fh:  # the fast path, for big files
                self.connection.sendfile(fh, offset=start, count=end - start)
            return
        while pos < end:
            stop = min(end, pos + step)
            if drop_at is not None and stop >= drop_at:
                self.wfile.write(file.read(pos, drop_at))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            chunk = file.read(pos, stop)
            if corrupt:
                chunk = bytes(b ^ 0xFF for b in chunk)
            self.wfile.write(chunk)
            pos = stop
            if rate is not None:
                time.sleep(len(chunk) / rate)
