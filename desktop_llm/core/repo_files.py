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


# Files a transformers model needs besides its weights: config, tokenizer, chat template.
_SIDE_FILES = (".json", ".jinja", ".model", ".txt", ".tiktoken")


def transformers_files(files: list[RepoFile] | tuple[RepoFile, ...]) -> list[RepoFile]:
    """What to download for a transformers model: safetensors weights and the small top-level files beside them.

    Pickled ``.bin`` weights are left out on purpose: safetensors cannot run code when loaded.
    """
    weights = [f for f in files if f.path.endswith(".safetensors") and "/" not in f.path]
    side = [f for f in files if f.path.endswith(_SIDE_FILES) and "/" not in f.path]
    return weights + side
