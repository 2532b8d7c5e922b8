"""The Hugging Face hub cache layout, so that files the app downloads are seen by ``huggingface_hub``,
transformers and other tools, and files they downloaded are seen by the app::

    <cache>/models--{org}--{name}/
        blobs/<sha256 or git etag>            complete, verified files (content-addressed)
        blobs/<sha256 or git etag>.incomplete  bytes of a download in progress (resumable)
        snapshots/<commit>/<path>              relative symlink to the blob (a copy where symlinks fail)
        refs/main                              the commit the branch pointed at
    <cache>/.locks/models--{org}--{name}/<etag>.lock   the lock huggingface_hub takes for the same blob

Only verified blobs are ever linked into ``snapshots``: a partial file never shows up as a model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from desktop_llm.core.atomic_file import write_text_atomic

log = logging.getLogger(__name__)

_FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = _FULL_COMMIT


def is_full_commit(revision: str) -> bool:
    return bool(_FULL_COMMIT.match(revision))


def is_sha256(value: str | None) -> bool:
    return bool(value and _SHA256.match(value))


def is_git_sha1(value: str | None) -> bool:
    return bool(value and _GIT_SHA1.match(value))


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """``models--org--name``, as ``huggingface_hub.file_download.repo_folder_name`` spells it."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    return Path(cache_dir) / repo_folder_name(repo_id)


def blob_path(storage: Path, key: str) -> Path:
    return storage / "blobs" / key


def incomplete_path(storage: Path, key: str) -> Path:
    # The name older huggingface_hub releases resumed from (2.x writes "<etag>.<random>.incomplete"
    # and never resumes); one name per blob is what lets a restarted app continue.
    return storage / "blobs" / f"{key}.incomplete"


def lock_path(cache_dir: Path, repo_id: str, key: str) -> Path:
    return Path(cache_dir) / ".locks" / repo_folder_name(repo_id) / f"{key}.lock"


def safe_repo_path(path: str) -> PurePosixPath:
    """The repo path as relative parts; a path that would leave the snapshot folder is refused."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")) or "\\" in path:
        raise ValueError(f"unsafe file path in repository: {path!r}")
    return pure


def pointer_path(storage: Path, commit: str, path: str) -> Path:
    return storage / "snapshots" / commit / Path(*safe_repo_path(path).parts)


def cached_file(cache_dir: Path, repo_id: str, commit: str, path: str) -> Path | None:
    """The snapshot entry of ``path`` at ``commit`` when it is in the cache (and its blob is there)."""
    pointer = pointer_path(repo_folder(cache_dir, repo_id), commit, path)
    return pointer if pointer.exists() else None  # exists() follows the symlink: a dangling one is missing


def link_pointer(blob: Path, pointer: Path, *, new_blob: bool) -> None:
    """Make ``pointer`` a relative symlink to ``blob``; where symlinks fail (Windows without developer
    mode, some network drives), move a blob only this file uses, else copy it."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(pointer):
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        return
    except (OSError, NotImplementedError, ValueError) as exc:
        log.info("Symlinks not available in %s (%s); storing the file in the snapshot instead", pointer.parent, exc)
    if new_blob:
        shutil.move(str(blob), str(pointer))
    else:
        shutil.copyfile(blob, pointer)


def write_ref(storage: Path, revision: str, commit: str) -> None:
    """``refs/<revision>`` = commit, written atomically (readers never see half a hash)."""
    if revision == commit or not is_full_commit(commit):
        return
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    try:
        if ref.read_text() == commit:
            return
    except OSError:
        pass
    write_text_atomic(ref, commit)


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (what the Hub sends as ETag for files kept in git, not LFS)."""
    size = path.stat().st_size
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
