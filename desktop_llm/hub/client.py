"""Search the Hugging Face Hub (or a mirror) and read a model's details, through ``huggingface_hub``.

Every call passes the token explicitly (``token=False`` when there is none), so a token from the
environment or another tool is never sent by accident, and the token never appears in a message,
a log line or a repr. Failures become the user-facing errors of ``desktop_llm.core.errors``.

Calls are blocking and bounded by ``timeout``: run them off the GUI thread. They fail fast rather than
retry for half a minute (``list_models`` retries 5 times with back-off), because a person is waiting.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status, http_backoff

from desktop_llm import __version__
from desktop_llm.core.errors import (
    AccessDenied,
    GatedRepo,
    HubError,
    ModelLoadError,
    NoNetwork,
    RateLimited,
    RepoNotFound,
    TokenInvalid,
)
from desktop_llm.core.fit_estimate import ModelShape, shape_from_config, shape_from_gguf
from desktop_llm.core.gguf_header import GGUFHeaderTruncated, read_gguf_prefix
from desktop_llm.core.quantization import group_quants
from desktop_llm.core.repo_files import RepoFile

log = logging.getLogger(__name__)

# Format choice -> Hub filter tag. Several formats narrow the search (the Hub ANDs its filters).
FORMAT_FILTERS = {"gguf": "gguf", "transformers": "transformers", "safetensors": "safetensors"}
# Sort choice -> the Hub's sort key (always descending).
SORTS = {"downloads": "downloads", "likes": "likes", "recent": "lastModified", "trending": "trendingScore",
         "created": "createdAt"}
# The real Hub lists only a few fields unless asked; these are what a result row shows.
_EXPAND = ["author", "downloads", "likes", "lastModified", "gated", "tags", "library_name", "pipeline_tag"]

_README_MAX = 256 << 10  # a card longer than this is cut: only its start is shown
_JSON_MAX = 4 << 20
_GGUF_FIRST_PIECE = 256 << 10  # the model's shape sits in the first few KB; the vocabulary follows
_CARD_LIMIT = 600


@dataclass(frozen=True)
class ModelSummary:
    """One search result."""

    repo_id: str
    author: str | None
    downloads: int
    likes: int
    last_modified: datetime | None
    license: str | None
    gated: bool
    formats: tuple[str, ...]  # "gguf", "transformers", "safetensors" (from tags and library_name)


@dataclass(frozen=True)
class SearchPage:
    results: list[ModelSummary]
    page: int
    has_next: bool


@dataclass(frozen=True)
class ModelDetail:
    repo_id: str
    commit: str
    author: str | None
    downloads: int
    likes: int
    last_modified: datetime | None
    license: str | None
    gated: bool
    card_excerpt: str  # the README's first paragraphs as plain-ish text, front matter removed
    files: tuple[RepoFile, ...]  # every file, with size and LFS SHA-256
    gguf_files: tuple[RepoFile, ...]
    has_safetensors: bool
    page_url: str


class HubClient:
    """Talks to one Hub endpoint, with one token (or none)."""

    def __init__(self, endpoint: str, token: str | None = None, timeout: float = 15.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._token = token or None
        # HF_ENDPOINT is read only at import, so the endpoint is always passed; token=False on the
        # instance so nothing falls back to a machine-wide token.
        self._api = HfApi(endpoint=self.endpoint, token=False, library_name="desktop-llm",
                          library_version=__version__)

    def __repr__(self) -> str:
        return f"HubClient(endpoint={self.endpoint!r}, authenticated={self._token is not None})"

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    @property
    def _token_arg(self) -> str | bool:
        return self._token if self._token is not None else False

    # -- search -------------------------------------------------------------------------------
    def search(self, text: str = "", *, formats: Sequence[str] = (), sort: str = "downloads", page: int = 0,
               page_size: int = 20) -> SearchPage:
        """One page of models matching ``text`` (empty: all), in the chosen formats, best first."""
        formats = (formats,) if isinstance(formats, str) else tuple(formats or ())
        formats = tuple(f for f in formats if f)
        unknown = [f for f in formats if f not in FORMAT_FILTERS]
        if unknown or sort not in SORTS or page < 0 or page_size < 1:
            raise ValueError(f"bad search arguments: formats={list(formats)} sort={sort!r} page={page}")
        # Hub cursors are opaque, so page N is the tail of the first (N+1) pages; one extra tells has_next.
        want = (page + 1) * page_size + 1
        params: dict[str, Any] | None = {"sort": SORTS[sort], "direction": -1, "limit": want, "expand": _EXPAND}
        if text.strip():
            params["search"] = text.strip()
        if formats:
            params["filter"] = [FORMAT_FILTERS[f] for f in formats]
        items: list[dict] = []
        url: str | None = f"{self.endpoint}/api/models"
        with self._errors():
            while url is not None and len(items) < want:
                response = self._get(url, params=params)
                items.extend(response.json())
                url = response.links.get("next", {}).get("url")
                params = None  # the Link URL carries the query
        start = page * page_size
        results = [_summary(ModelInfo(**{"siblings": None, **item})) for item in items[start:start + page_size]]
        return SearchPage(results=results, page=page, has_next=len(items) > start + page_size)

    # -- one model ----------------------------------------------------------------------------
    def model_detail(self, repo_id: str) -> ModelDetail:
        """Everything the model page shows: numbers, licence, card excerpt, files with sizes and SHA-256."""
        with self._errors(repo_id):
            info = self._api.model_info(repo_id, files_metadata=True, timeout=self.timeout, token=self._token_arg)
        commit = info.sha or "main"
        files = tuple(
            RepoFile(path=s.rfilename, size=s.size, sha256=(s.lfs.sha256 if s.lfs else None))
            for s in (info.siblings or [])
        )
        readme = next((f.path for f in files if f.path.lower() == "readme.md"), None)
        card = ""
        if readme is not None:
            try:
                card = card_excerpt(self._read_small(repo_id, commit, readme, _README_MAX).decode("utf-8", "replace"))
            except HubError as exc:  # a missing or unreadable card must not hide the model
                log.info("No card for %s: %s", repo_id, exc.message)
        summary = _summary(info)
        return ModelDetail(
            repo_id=info.id or repo_id, commit=commit, author=summary.author, downloads=summary.downloads,
            likes=summary.likes, last_modified=summary.last_modified, license=summary.license, gated=summary.gated,
            card_excerpt=card, files=files, gguf_files=tuple(f for f in files if f.path.lower().endswith(".gguf")),
            has_safetensors=any(f.path.lower().endswith(".safetensors") for f in files),
            page_url=f"{self.endpoint}/{repo_id}",
        )

    def read_gguf_header(self, repo_id: str, commit: str, file: RepoFile | str,
                         max_bytes: int = 16 << 20) -> dict | None:
        """The GGUF metadata of a remote file, fetching only its start with Range requests.

        Ranges grow until the model's description is read: the whole metadata when it fits, else every key
        before the tokenizer's long arrays (whose lengths are kept, e.g. the vocabulary size) -- the chat
        template behind them is not worth megabytes here. ``gguf.complete`` says which. None when the file
        is not GGUF or is corrupt; Hub and network failures raise ``HubError``s.
        """
        path = file.path if isinstance(file, RepoFile) else file
        size = file.size if isinstance(file, RepoFile) else None
        limit = max_bytes if size is None else min(size, max_bytes)
        data = b""
        with self._errors(repo_id):
            while True:
                # Each piece doubles what we have; it continues where the last one ended.
                want = min(limit, max(_GGUF_FIRST_PIECE, 2 * len(data)))
                short = False
                if want > len(data):
                    piece, total = self._read_range(repo_id, commit, path, len(data), want)
                    short = len(piece) < want - len(data)  # the file ended
                    data += piece
                    if total is not None:
                        limit = min(limit, total)
                at_end = short or len(data) >= limit
                try:
                    prefix = read_gguf_prefix(data, path.rsplit("/", 1)[-1])
                except GGUFHeaderTruncated:
                    if at_end:
                        return None
                    continue
                except ModelLoadError as exc:
                    log.info("Not a readable GGUF header: %s/%s: %s", repo_id, path, exc.message)
                    return None
                in_tokenizer = (prefix.stopped_in or "").startswith("tokenizer.")
                if prefix.complete or at_end or in_tokenizer:
                    if "general.architecture" not in prefix.meta:
                        return None
                    return {**prefix.meta, "gguf.complete": prefix.complete}

    def read_json(self, repo_id: str, commit: str, path: str, max_bytes: int = _JSON_MAX) -> dict | None:
        """A small JSON file of a repo (config.json, ...): None when missing or not a JSON object."""
        try:
            raw = self._read_small(repo_id, commit, path, max_bytes)
        except HubError as exc:
            if isinstance(exc.__cause__, RemoteEntryNotFoundError):
                return None
            raise
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def model_shape(self, detail: ModelDetail) -> ModelShape | None:
        """The model's shape for fit estimates: every quantization of a repo shares it, so one GGUF header
        (of the first complete choice) or the repo's config.json is read, once. None when neither says."""
        complete = [c for c in group_quants(detail.gguf_files) if c.complete]
        if complete:
            meta = self.read_gguf_header(detail.repo_id, detail.commit, complete[0].files[0])
            return shape_from_gguf(meta) if meta else None
        if detail.has_safetensors:
            config = self.read_json(detail.repo_id, detail.commit, "config.json")
            return shape_from_config(config) if config else None
        return None

    def whoami(self) -> str:
        """The Hub user name of the token; ``TokenInvalid`` when it is wrong or expired."""
        if self._token is None:
            raise TokenInvalid("No Hub token is set.", "Add a token in Settings (Hub) to sign in.")
        with self._errors():
            data = self._get(f"{self.endpoint}/api/whoami-v2").json()
        name = data.get("name") if isinstance(data, dict) else None
        if not name:
            raise HubError(f"The Hub at {self.endpoint} gave an unexpected answer about the token.",
                           "Check the Hub address in Settings.")
        return str(name)

    # -- plumbing -----------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = build_hf_headers(token=self._token_arg, library_name="desktop-llm", library_version=__version__)
        if extra:
            headers.update(extra)
        return headers

    def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx2.Response:
        # One quick retry for a dropped keep-alive connection or a passing server error; a 429 is reported
        # at once ("try again in a minute") instead of sleeping through huggingface_hub's long back-off.
        response = http_backoff("GET", url, params=params, headers=self._headers(), timeout=self.timeout,
                                max_retries=1, base_wait_time=0.5,
                                retry_on_exceptions=(httpx2.RemoteProtocolError, httpx2.ReadError),
                                retry_on_status_codes=(500, 502, 503, 504))
        hf_raise_for_status(response)
        return response

    @contextmanager
    def _stream(self, url: str, headers: dict[str, str] | None = None) -> Iterator[httpx2.Response]:
        with get_session().stream("GET", url, headers=self._headers(headers), timeout=self.timeout) as response:
            if response.status_code >= 400:
                response.read()  # error bodies are small; hf_raise_for_status reads the message from them
                hf_raise_for_status(response)
            yield response

    def _url(self, repo_id: str, commit: str, path: str) -> str:
        return hf_hub_url(repo_id, path, revision=commit, endpoint=self.endpoint)

    def _read_small(self, repo_id: str, commit: str, path: str, max_bytes: int) -> bytes:
        """The first ``max_bytes`` of a file (a small one is read whole)."""
        data = bytearray()
        with self._errors(repo_id), self._stream(self._url(repo_id, commit, path)) as response:
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= max_bytes:
                    break
        return bytes(data[:max_bytes])

    def _read_range(self, repo_id: str, commit: str, path: str, start: int, end: int) -> tuple[bytes, int | None]:
        """Bytes [start, end) of a file and the file's size when the server said; b"" past the end."""
        data = bytearray()
        with self._stream(self._url(repo_id, commit, path), {"Range": f"bytes={start}-{end - 1}"}) as response:
            total = _total_size(response)
            if response.status_code == 416:
                return b"", total
            skip = start if response.status_code == 200 else 0  # a server that ignores Range sends it all
            for chunk in response.iter_bytes():
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                data += chunk
                if len(data) >= end - start:
                    break  # leaving the block closes the stream: the rest is never fetched
        return bytes(data[: end - start]), total

    @contextmanager
    def _errors(self, repo_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except HubError:
            raise
        except Exception as exc:  # every Hub or network failure becomes a user-facing HubError
            mapped = hub_error(exc, endpoint=self.endpoint, repo_id=repo_id, authenticated=self.authenticated)
            if mapped is None:
                raise
            raise mapped from exc


def _total_size(response: httpx2.Response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    if response.status_code == 200 and response.headers.get("Content-Length", "").isdigit():
        return int(response.headers["Content-Length"])
    return None


def hub_error(exc: BaseException, *, endpoint: str, repo_id: str | None = None,
              authenticated: bool = False) -> HubError | None:
    """The user-facing error for a failure of ``huggingface_hub`` or the network; None for anything else
    (a programming error should surface as itself). Messages never include the token."""
    repo_id = repo_id or getattr(exc, "repo_id", None)
    name = repo_id or "this model"
    page = f"{endpoint}/{repo_id}" if repo_id else endpoint
    if isinstance(exc, OfflineModeIsEnabled):
        return NoNetwork(f"Offline mode is on (HF_HUB_OFFLINE), so the app does not contact the Hub at {endpoint}.",
                         "Unset HF_HUB_OFFLINE and restart the app to search and download models.")
    if isinstance(exc, GatedRepoError):
        if authenticated:
            return GatedRepo(f"Your Hub account has not been given access to {name} yet.",
                             f"Open {page} to accept its terms or request access (approval can take a while), "
                             "and check your token may read gated repositories.", url=page)
        return GatedRepo(f"{name} is a gated model: its authors ask you to accept their terms first.",
                         f"Open {page}, sign in and accept the terms, then add a Hub token of that account "
                         "in Settings.", url=page)
    if isinstance(exc, RepositoryNotFoundError):
        hint = ("Check the name; if the model is private, check your token's account can see it." if authenticated
                else "Check the name; if the model is private, add a Hub token in Settings.")
        return RepoNotFound(f"There is no model {name} on the Hub at {endpoint}.", hint)
    if isinstance(exc, RevisionNotFoundError):
        return RepoNotFound(f"The version of {name} shown here is no longer on the Hub.",
                            "Open the model again to see its current files.")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubError(f"A file of {name} is not on the Hub (any more).",
                        "Open the model again to see its current files.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401:
            if authenticated:
                return TokenInvalid("The Hub did not accept your token: it is wrong, expired or revoked.",
                                    "Create a new read token at https://huggingface.co/settings/tokens and set "
                                    "it in Settings.")
            return AccessDenied(f"The Hub at {endpoint} asks you to sign in for this.",
                                "Add a Hub token in Settings.")
        if status == 403:
            if authenticated:
                return AccessDenied(f"Your Hub token does not give access to {name}.",
                                    "Check the token's permissions on the Hub (a read token works), or ask the "
                                    "model's owners for access.")
            return AccessDenied(f"The Hub refused access to {name}.", "Add a Hub token with access in Settings.")
        if status == 429:
            return RateLimited("The Hub is limiting how many requests this computer makes.",
                               "Wait a moment and try again in a minute.")
        if status >= 500:
            return HubError(f"The Hub at {endpoint} had a problem (error {status}).", "Try again in a few minutes.")
        return HubError(f"The Hub at {endpoint} refused the request (error {status}).",
                        "Try again; if it keeps happening, check the Hub address in Settings.")
    if isinstance(exc, (httpx2.InvalidURL, httpx2.UnsupportedProtocol)):
        return HubError(f"The Hub address {endpoint!r} is not a valid web address.",
                        "Fix it in Settings (for example https://huggingface.co).")
    if isinstance(exc, httpx2.TimeoutException):
        return NoNetwork(f"The Hub at {endpoint} did not answer in time.",
                         "Check your internet connection, or try again later.")
    if isinstance(exc, (httpx2.TransportError, ConnectionError)):
        return NoNetwork(f"Cannot reach the Hub at {endpoint}.",
                         "Check your internet connection (and the Hub address in Settings), then try again.")
    if isinstance(exc, json.JSONDecodeError):
        return HubError(f"The Hub at {endpoint} answered with something unexpected.",
                        "Check the Hub address in Settings points to the Hugging Face Hub or a mirror.")
    return None


def _summary(info: ModelInfo) -> ModelSummary:
    tags = list(info.tags or [])
    license_ = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    card = info.card_data
    if license_ is None and card is not None:
        license_ = getattr(card, "license", None)
    formats = []
    if "gguf" in tags or info.library_name == "gguf":
        formats.append("gguf")
    if info.library_name == "transformers" or "transformers" in tags:
        formats.append("transformers")
    if "safetensors" in tags:
        formats.append("safetensors")
    author = info.author or (info.id.split("/", 1)[0] if "/" in info.id else None)
    return ModelSummary(
        repo_id=info.id, author=author, downloads=int(info.downloads or 0), likes=int(info.likes or 0),
        last_modified=info.last_modified, license=license_ if isinstance(license_, str) else None,
        gated=info.gated not in (None, False, "false", "False"), formats=tuple(formats),
    )


# -- the card excerpt -----------------------------------------------------------------------------
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_CODE = re.compile(r"^```.*?(?:^```[^\n]*$|\Z)", re.S | re.M)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<[^>\n]+>")
_EMPHASIS = re.compile(r"(\*\*|__|`)")


def card_excerpt(markdown: str, limit: int = _CARD_LIMIT) -> str:
    """The first paragraphs of a model card as plain-ish text, at most ``limit`` characters:
    front matter, HTML, images, code blocks and tables dropped; links become their text."""
    text = _FRONT_MATTER.sub("", markdown.replace("\r\n", "\n"), count=1)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = _CODE.sub("", text)
    text = _TAG.sub("", _LINK.sub(r"\1", _IMAGE.sub("", text)))
    paragraphs: list[str] = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines: list[str] = []
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith("|") or re.fullmatch(r"[-=*_ :|]{3,}", line):
                continue  # tables and rules say little in a short excerpt
            line = _EMPHASIS.sub("", line)
            if line.startswith("#"):
                if lines:
                    paragraphs.append("\n".join(lines))
                    lines = []
                heading = line.lstrip("#").strip()
                if heading:
                    paragraphs.append(heading)
                continue
            lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    out = ""
    for para in paragraphs:
        joined = f"{out}\n\n{para}" if out else para
        if len(joined) <= limit:
            out = joined
            continue
        room = limit - len(out) - (2 if out else 0)
        if room >= 80 or not out:
            cut = para[: room - 1]
            cut = cut.rsplit(" ", 1)[0] if " " in cut else cut
            out = (f"{out}\n\n" if out else "") + cut.rstrip() + "…"
        break
    return out
