"""A file in a Hub repository, as the Hub lists it: the one name the hub client, the quantization
picker and the downloader share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepoFile:
    """One file of a model repository at one commit."""

    path: str  # path inside the repo ("rfilename"), may contain folders
    size: int | None = None  # bytes, when the Hub said
    sha256: str | None = None  # the LFS SHA-256; None for small files kept in git

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]
