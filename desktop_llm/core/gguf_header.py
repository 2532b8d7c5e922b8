"""Read the metadata of a GGUF file without loading it.

Only the header is parsed, and large arrays (the vocabulary) are skipped, not built, so
listing a library of models stays fast. A file that is not GGUF, or is cut short, gives a
``ModelLoadError`` that says so.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from desktop_llm.core.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
# Value types of the GGUF spec: (struct format, size) for the fixed-size ones.
_SCALARS = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
# Arrays longer than this are summarised by their length (vocabularies have ~50k+ items).
_MAX_ARRAY_ITEMS = 64
_MAX_STRING = 16 * 1024 * 1024


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh = fh
        self.path = path

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ModelLoadError(
                f"{self.path.name} is cut short: its GGUF header ends before it should.",
                "The download may be incomplete; download the file again.",
            )
        return data

    def scalar(self, vtype: int) -> Any:
        fmt, size = _SCALARS[vtype]
        return struct.unpack(fmt, self.read(size))[0]

    def string(self) -> str:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > _MAX_STRING:
            raise ModelLoadError(f"{self.path.name} has a corrupt GGUF header (a string of {length} bytes).",
                                 "The file is damaged; download it again.")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(vtype)
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            (item_type,) = struct.unpack("<I", self.read(4))
            (count,) = struct.unpack("<Q", self.read(8))
            if count <= _MAX_ARRAY_ITEMS:
                return [self.value(item_type) for _ in range(count)]
            self.skip_array(item_type, count)
            return ArraySummary(count)
        raise ModelLoadError(f"{self.path.name} has a corrupt GGUF header (unknown value type {vtype}).",
                             "The file is damaged or from a newer GGUF version; download it again.")

    def skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.fh.seek(_SCALARS[item_type][1] * count, 1)
        elif item_type == _STRING:
            for _ in range(count):
                (length,) = struct.unpack("<Q", self.read(8))
                self.fh.seek(length, 1)
        else:
            for _ in range(count):
                self.value(item_type)


class ArraySummary(int):
    """Stands for a long array in the metadata: its value is the item count."""


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Return the key/value metadata of a GGUF file, plus ``gguf.version`` and ``gguf.tensor_count``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            reader = _Reader(fh, path)
            magic = fh.read(4)
            if magic != GGUF_MAGIC:
                raise ModelLoadError(
                    f"{path.name} is not a GGUF model file (it does not start with 'GGUF').",
                    "Pick a .gguf file downloaded from a model repository, or re-download it.",
                )
            version, tensor_count, kv_count = struct.unpack("<IQQ", reader.read(20))
            if version not in (2, 3) or kv_count > 100_000:
                raise ModelLoadError(f"{path.name} has an unsupported or corrupt GGUF header (version {version}).",
                                     "Download the file again, or update the app.")
            meta: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": tensor_count}
            for _ in range(kv_count):
                key = reader.string()
                (vtype,) = struct.unpack("<I", reader.read(4))
                meta[key] = reader.value(vtype)
            return meta
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror or exc}.",
                             "Check the file exists and is readable.") from exc


def describe_gguf(meta: dict[str, Any]) -> dict[str, Any]:
    """The facts a model list shows: architecture, context length, parameters' quantization, name."""
    arch = meta.get("general.architecture", "unknown")
    return {
        "architecture": arch,
        "context_length": meta.get(f"{arch}.context_length"),
        "name": meta.get("general.name"),
        "file_type": meta.get("general.file_type"),
        "has_chat_template": "tokenizer.chat_template" in meta,
    }
