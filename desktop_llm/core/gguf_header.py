"""Read the metadata of a GGUF file without loading it.

Only the header is parsed, and large arrays (the vocabulary) are skipped, not built, so
listing a library of models stays fast. A file that is not GGUF, or is cut short, gives a
``ModelLoadError`` that says so.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
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


class GGUFHeaderTruncated(ModelLoadError):
    """The data ends inside the GGUF header: a cut-short file, or (for a remote file read in pieces)
    a sign that more bytes are needed."""


class _Reader:
    def __init__(self, fh: BinaryIO, name: str) -> None:
        self.fh = fh
        self.name = name

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFHeaderTruncated(
                f"{self.name} is cut short: its GGUF header ends before it should.",
                "The download may be incomplete; download the file again.",
            )
        return data

    def scalar(self, vtype: int) -> Any:
        fmt, size = _SCALARS[vtype]
        return struct.unpack(fmt, self.read(size))[0]

    def string(self) -> str:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > _MAX_STRING:
            raise ModelLoadError(f"{self.name} has a corrupt GGUF header (a string of {length} bytes).",
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
        raise ModelLoadError(f"{self.name} has a corrupt GGUF header (unknown value type {vtype}).",
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


def _fixed_header(reader: _Reader) -> tuple[dict[str, Any], int]:
    """Check the magic and version; return the first metadata entries and the number of keys."""
    magic = reader.fh.read(4)
    if magic != GGUF_MAGIC:
        if len(magic) < 4 and GGUF_MAGIC.startswith(magic):
            reader.read(4)  # raises GGUFHeaderTruncated: too little data to tell
        raise ModelLoadError(
            f"{reader.name} is not a GGUF model file (it does not start with 'GGUF').",
            "Pick a .gguf file downloaded from a model repository, or re-download it.",
        )
    version, tensor_count, kv_count = struct.unpack("<IQQ", reader.read(20))
    if version not in (2, 3) or kv_count > 100_000:
        raise ModelLoadError(f"{reader.name} has an unsupported or corrupt GGUF header (version {version}).",
                             "Download the file again, or update the app.")
    return {"gguf.version": version, "gguf.tensor_count": tensor_count}, kv_count


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Return the key/value metadata of a GGUF file, plus ``gguf.version`` and ``gguf.tensor_count``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return read_gguf_metadata_from(fh, path.name)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc.strerror or exc}.",
                             "Check the file exists and is readable.") from exc


def read_gguf_metadata_from(fh: BinaryIO, name: str = "The GGUF data") -> dict[str, Any]:
    """Like ``read_gguf_metadata``, from an open binary file object (a file, or ``io.BytesIO`` holding the
    start of a remote file). ``name`` is used in messages. Raises ``GGUFHeaderTruncated`` when the data ends
    inside the metadata, so a caller reading a remote file in pieces knows to fetch more."""
    reader = _Reader(fh, name)
    meta, kv_count = _fixed_header(reader)
    for _ in range(kv_count):
        key = reader.string()
        (vtype,) = struct.unpack("<I", reader.read(4))
        meta[key] = reader.value(vtype)
    return meta


@dataclass(frozen=True)
class GGUFPrefix:
    """What the start of a GGUF file says: the metadata read so far, and where the data ran out.

    ``complete`` is True when every key was read. Otherwise ``stopped_in`` is the key whose value the data
    ended in (None when it ended before or inside a key name); when that value is an array whose length
    was read, ``meta`` holds it as an ``ArraySummary``.
    """

    meta: dict[str, Any]
    complete: bool
    stopped_in: str | None = None


def read_gguf_prefix(data: bytes, name: str = "The GGUF data") -> GGUFPrefix:
    """Parse as much metadata as the first bytes of a GGUF file hold (for remote files read in pieces).

    Raises ``GGUFHeaderTruncated`` when not even the fixed header (magic, version, counts) is there,
    and ``ModelLoadError`` when the data is not GGUF.
    """
    fh = io.BytesIO(data)
    reader = _Reader(fh, name)
    meta, kv_count = _fixed_header(reader)
    for _ in range(kv_count):
        try:
            key = reader.string()
            (vtype,) = struct.unpack("<I", reader.read(4))
        except GGUFHeaderTruncated:
            return GGUFPrefix(meta, complete=False)
        value_at = fh.tell()
        try:
            meta[key] = reader.value(vtype)
        except GGUFHeaderTruncated:
            # An array's length comes first: keep it (the vocabulary size, say) even if its items are cut off.
            if vtype == _ARRAY and len(data) >= value_at + 12:
                (count,) = struct.unpack_from("<Q", data, value_at + 4)
                meta[key] = ArraySummary(count)
            return GGUFPrefix(meta, complete=False, stopped_in=key)
        if fh.tell() > len(data):  # a skipped array ran past the end: its length is right, the data is not all here
            return GGUFPrefix(meta, complete=False, stopped_in=key)
    return GGUFPrefix(meta, complete=True)


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
