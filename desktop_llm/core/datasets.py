"""Fine-tune datasets: read JSONL, JSON and CSV files, detect their shape, check every record.

Five shapes are understood: chat messages, ShareGPT, Alpaca, prompt/completion and plain text.
Every record that cannot be used is reported with its line number; nothing is left out silently.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from desktop_llm.core.errors import InvalidRequest

SHAPES = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")
FILE_FORMATS = ("jsonl", "json", "csv")
LENGTH_POLICIES = ("drop", "truncate")
CANONICAL_ROLES = ("system", "user", "assistant")
# Below this many records a validation set would be too small to mean anything.
MIN_RECORDS_FOR_VALIDATION = 10

DEFAULT_ROLES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}

DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "messages": {"messages": "messages", "role": "role", "content": "content"},
    "sharegpt": {"conversations": "conversations", "from": "from", "value": "value"},
    "alpaca": {"instruction": "instruction", "input": "input", "output": "output"},
    "prompt_completion": {"prompt": "prompt", "completion": "completion"},
    "text": {"text": "text"},
}

# The fields a record cannot do without (alpaca's input is optional; turn keys are checked per turn).
_REQUIRED = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}

SHAPE_TITLES = {
    "messages": "Chat messages",
    "sharegpt": "ShareGPT",
    "alpaca": "Alpaca",
    "prompt_completion": "Prompt/completion",
    "text": "Plain text",
}

# Names seen in the wild for each part, in order of preference (matched case-insensitively).
_CONVERSATION_KEYS = ("messages", "conversations", "conversation", "dialog", "dialogue", "chat", "turns")
_ROLE_KEYS = ("role", "from", "speaker", "author")
_CONTENT_KEYS = ("content", "value", "text", "message")
_INPUT_KEYS = ("input", "context")
_PROMPT_KEYS = ("prompt", "question", "query", "input", "source")
_REPLY_KEYS = ("output", "response", "answer", "completion", "reply", "target")
_TEXT_KEYS = ("text", "content", "document", "body")
# When a JSON object holds several lists, these names say "the records are here".
_WRAPPER_KEYS = ("data", "train", "records", "examples", "rows", "items", "samples")

_KNOWN_SHAPES_TEXT = (
    'chat messages ("messages": list of {"role", "content"}), '
    'ShareGPT ("conversations": list of {"from", "value"}), '
    'Alpaca ("instruction", "input", "output"), '
    'prompt/completion ("prompt", "completion") and plain text ("text")'
)

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_HEADER_CELL_MAX = 64  # a longer "column name" is almost surely a record: the header row is missing


@dataclass(frozen=True)
class DatasetProblem:
    line: int  # 1-based line where the record starts in the file
    kind: str  # stable name: malformed_json, not_an_object, missing_field, unknown_role, empty_reply, ...
    message: str  # for the user: "Line 7: ... ; what to do."
    dropped: bool  # True when the record is left out of training because of it


@dataclass
class FieldMapping:
    shape: str
    fields: dict[str, str]  # logical name -> key/column in the file
    roles: dict[str, str] = field(default_factory=dict)  # file role -> system/user/assistant; empty = defaults
    system_prompt: str | None = None  # added as a first system turn to every chat record

    def describe(self) -> str:
        """One line for the user, e.g. "Alpaca: instruction + input → user, output → assistant"."""
        f = {**DEFAULT_FIELDS.get(self.shape, {}), **self.fields}
        if self.shape == "messages":
            text = f'Chat messages: "{f["messages"]}" turns, role from "{f["role"]}", text from "{f["content"]}"'
        elif self.shape == "sharegpt":
            text = f'ShareGPT: "{f["conversations"]}" turns, speaker from "{f["from"]}", text from "{f["value"]}"'
        elif self.shape == "alpaca":
            text = f"Alpaca: {f['instruction']} + {f['input']} → user, {f['output']} → assistant"
        elif self.shape == "prompt_completion":
            text = f"Prompt/completion: {f['prompt']} → user, {f['completion']} → assistant"
        elif self.shape == "text":
            text = f"Plain text: {f['text']}"
        else:
            return f"Unknown shape {self.shape!r}"
        if self.shape in ("messages", "sharegpt"):
            renamed = [f"{k} → {v}" for k, v in self.roles.items() if k != v]
            if renamed:
                text += "; " + ", ".join(renamed)
        if self.system_prompt and self.system_prompt.strip() and self.shape != "text":
            text += "; a system prompt is added to every record"
        return text


@dataclass(frozen=True)
class Record:
    line: int
    messages: tuple[dict[str, str], ...] | None  # role/content turns (every shape except text)
    text: str | None  # plain-text shape only


@dataclass
class LoadedDataset:
    path: Path
    file_format: str  # jsonl | json | csv
    mapping: FieldMapping
    records: list[Record]  # the usable records, in file order
    problems: list[DatasetProblem]  # sorted by line
    total: int  # records in the file, good or bad
    notes: list[str] = field(default_factory=list)  # facts about the reading the user should see (not problems)

    def summary(self) -> str:
        """E.g. "118 records: 114 usable, 6 with problems (4 left out)"."""
        with_problems = {p.line for p in self.problems}
        left_out = {p.line for p in self.problems if p.dropped}
        head = f"{_plural(self.total, 'record')}: {len(self.records):,} usable"
        if not with_problems:
            return f"{head}, no problems"
        return f"{head}, {len(with_problems):,} with problems ({len(left_out):,} left out)"


# ----------------------------------------------------------------------------------------------------------------
# Reading files


@dataclass
class _RawFile:
    file_format: str
    rows: list[tuple[int, Any]]
    problems: list[DatasetProblem]
    total: int
    notes: list[str]


def read_rows(path: str | Path) -> tuple[str, list[tuple[int, Any]], list[DatasetProblem]]:
    """Read a dataset file into (format, [(line, row)], problems) without interpreting the rows.

    Rows that cannot be read (malformed JSON line, a line that is not an object) are problems, not rows.
    A file with no records at all gives a single "empty_file" problem. Raises InvalidRequest when the
    file as a whole cannot be read (missing, not UTF-8, broken JSON document, CSV without a header).
    """
    raw = _read(Path(path))
    return raw.file_format, raw.rows, raw.problems


def _read(path: Path) -> _RawFile:
    text = _read_text(path)
    suffix = path.suffix.lower()
    if not text.strip():
        fmt = {".json": "json", ".csv": "csv", ".tsv": "csv"}.get(suffix, "jsonl")
        empty = _problem(1, "empty_file", "the file is empty; choose a file that holds records", False)
        return _RawFile(fmt, [], [empty], 0, [])
    stripped = text.lstrip()
    if suffix in (".csv", ".tsv"):
        return _read_csv(text, path.name, "\t" if suffix == ".tsv" else None)
    if suffix == ".json":
        return _read_json(text, path.name)
    if suffix in (".jsonl", ".ndjson", ".jsonlines"):
        # A pretty-printed JSON list saved as .jsonl: read it as what it is.
        if stripped.startswith("[") and _parses_as_json(text):
            return _read_json(text, path.name)
        return _read_jsonl(text)
    # No telling extension: look at the content.
    if stripped.startswith("["):
        return _read_json(text, path.name)
    if stripped.startswith("{"):
        return _read_jsonl(text) if _first_line_is_object(text) else _read_json(text, path.name)
    return _read_csv(text, path.name, None)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"The dataset file {path} does not exist.", hint="Choose the file again.") from None
    except IsADirectoryError:
        raise InvalidRequest(f"{path} is a folder, not a dataset file.", hint="Choose a .jsonl, .json or .csv file.") \
            from None
    except OSError as e:
        raise InvalidRequest(f"Could not read {path}: {e.strerror or e}.",
                             hint="Check that the file exists and you may read it.") from None
    # Spreadsheet tools on Windows like to write UTF-16 with a BOM; that is still text, so read it.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InvalidRequest(
            f"{path.name} is not UTF-8 text: line {line} holds bytes that are not valid UTF-8.",
            hint="Save the file as UTF-8 (most editors offer it under Save As). "
            "A spreadsheet or Parquet file must first be exported as CSV (UTF-8) or JSON Lines.",
        ) from None


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _first_line_is_object(text: str) -> bool:
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def _read_jsonl(text: str) -> _RawFile:
    rows: list[tuple[int, Any]] = []
    problems: list[DatasetProblem] = []
    total = 0
    # split("\n") rather than splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip():
            continue  # a blank line is not a record
        total += 1
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(_problem(number, "malformed_json",
                                     f"the JSON is malformed ({e.msg} at column {e.colno}); fix or remove the line",
                                     True))
            continue
        if not isinstance(value, dict):
            problems.append(_problem(number, "not_an_object",
                                     f"expected a JSON object {{...}} but found {_kind_of(value)}; "
                                     "each line must hold one record as an object", True))
            continue
        rows.append((number, value))
    return _RawFile("jsonl", rows, problems, total, [])


def _read_json(text: str, name: str) -> _RawFile:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        # Some ".json" files are really JSON Lines: one object per line.
        if text.lstrip().startswith("{") and e.msg == "Extra data" and _first_line_is_object(text):
            return _read_jsonl(text)
        raise InvalidRequest(
            f"{name} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}.",
            hint="Fix the file at that line. Saving it as JSON Lines (one record per line) lets the app "
            "read the good records even when one is broken.",
        ) from None
    notes: list[str] = []
    start = _JSON_SPACE.match(text, 0).end()
    if isinstance(value, dict):
        key = _wrapper_key(value, name)
        if key is None:  # the object is itself one record
            return _RawFile("json", [(_line_at(text, start), value)], [], 1, [])
        notes.append(f'The records were read from the "{key}" list of the top-level JSON object.')
        start = _member_start(text, start, key)
        value = value[key]
    elif not isinstance(value, list):
        raise InvalidRequest(f"{name} holds {_kind_of(value)}, not a list of records.",
                             hint='A JSON dataset is a list of objects: [{"prompt": ..., "completion": ...}, ...].')
    if not value:
        return _RawFile("json", [], [_problem(_line_at(text, start), "empty_file",
                                              "the JSON list is empty; choose a file that holds records", False)],
                        0, notes)
    rows: list[tuple[int, Any]] = []
    problems: list[DatasetProblem] = []
    for line, item in zip(_element_lines(text, start), value, strict=True):
        if isinstance(item, dict):
            rows.append((line, item))
        else:
            problems.append(_problem(line, "not_an_object",
                                     f"expected a JSON object {{...}} but found {_kind_of(item)}; "
                                     "each element of the list must be one record", True))
    return _RawFile("json", rows, problems, len(value), notes)


def _wrapper_key(obj: dict[str, Any], name: str) -> str | None:
    """The key of the list that holds the records in {"data": [...]}, or None when obj is one record."""
    lists = [k for k, v in obj.items() if isinstance(v, list)]
    if not lists or _detect_chat([(1, obj)]) is not None:
        return None
    if len(lists) == 1:
        return lists[0]
    of_objects = [k for k in lists if obj[k] and all(isinstance(x, dict) for x in obj[k])]
    if len(of_objects) == 1:
        return of_objects[0]
    preferred = [k for k in (of_objects or lists) if k.lower() in _WRAPPER_KEYS]
    if len(preferred) == 1:
        return preferred[0]
    raise InvalidRequest(
        f"{name} is a JSON object with several lists ({', '.join(lists)}); "
        "the app cannot tell which one holds the records.",
        hint="Keep only the list of records, or save the file as a plain list: [{...}, {...}].",
    )


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _member_start(text: str, pos: int, key: str) -> int:
    """Where the value of top-level `key` starts in the (already validated) JSON object starting at pos."""
    decoder = json.JSONDecoder()
    found = -1
    pos = _JSON_SPACE.match(text, pos + 1).end()  # past "{"
    while text[pos] != "}":
        name, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end() + 1  # past ":"
        pos = _JSON_SPACE.match(text, pos).end()
        if name == key:
            found = pos  # keep the last one: json.loads lets a repeated key win
        _, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end()
        if text[pos] == ",":
            pos = _JSON_SPACE.match(text, pos + 1).end()
    return found


def _element_lines(text: str, pos: int) -> list[int]:
    """The line where each element of the (already validated) JSON array starting at pos begins.

    raw_decode walks the array element by element; counting newlines between elements keeps it linear.
    """
    decoder = json.JSONDecoder()
    lines: list[int] = []
    line, last = _line_at(text, pos), pos
    pos = _JSON_SPACE.match(text, pos + 1).end()  # past "["
    while text[pos] != "]":
        line += text.count("\n", last, pos)
        last = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end()
        if text[pos] == ",":
            pos = _JSON_SPACE.match(text, pos + 1).end()
    return lines


def _read_csv(text: str, name: str, delimiter: str | None) -> _RawFile:
    if delimiter is None:
        first = next((ln for ln in text.split("\n") if ln.strip()), "")
        delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    rows: list[tuple[int, Any]] = []
    problems: list[DatasetProblem] = []
    header: list[str] | None = None
    header_line = 0
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # the default (128 KiB) is too small for long documents
    # strict: a broken quote stops with its line number instead of swallowing the rest of the file into one value.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    previous_end = 0
    try:
        for cells in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue  # a blank line (or a row of empty cells a spreadsheet left behind) is not a record
            if header is None:
                header, header_line = _csv_header(cells, start, name, delimiter), start
                continue
            extra = cells[len(header):]
            if any(c.strip() for c in extra):
                problems.append(_problem(start, "extra_values",
                                         f"the row has {len(cells)} values but the header (line {header_line}) names "
                                         f"{len(header)} columns; put values that contain '{_show(delimiter)}' in "
                                         'double quotes', True))
                continue
            rows.append((start, dict(zip(header, cells, strict=False))))  # a short row lacks its last fields
    except csv.Error as e:
        raise InvalidRequest(
            f"{name}, line {previous_end + 1}: the CSV could not be read ({e}); a quoted value there is probably "
            "missing its closing quote, or has text right after it.",
            hint='Fix the quoting from that line on (a quote inside a quoted value is written twice: ""), '
            "or export the file again as CSV (UTF-8).",
        ) from None
    finally:
        csv.field_size_limit(old_limit)
    total = len(rows) + len(problems)  # each problem so far is one unreadable row
    if not total:
        problems.append(_problem(header_line or 1, "empty_file",
                                 "the CSV file has a header row but no records below it", False))
    return _RawFile("csv", rows, problems, total, [])


def _csv_header(cells: list[str], line: int, name: str, delimiter: str) -> list[str]:
    header = [c.strip() for c in cells]
    while header and not header[-1]:
        header.pop()  # trailing empty columns are a spreadsheet's leftovers
    example = _show(delimiter).join(("instruction", "input", "output"))
    if any(len(c) > _HEADER_CELL_MAX or "\n" in c for c in header):
        raise InvalidRequest(
            f"{name} needs a header row naming its columns, but line {line} looks like a record.",
            hint=f"Add a first line with the column names, for example: {example}",
        )
    if "" in header:
        raise InvalidRequest(f"{name}: column {header.index('') + 1} of the header row (line {line}) has no name.",
                             hint=f"Give every column a name in the first line, for example: {example}")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise InvalidRequest(f"{name}: the header row (line {line}) names the column "
                             f"{', '.join(repr(d) for d in duplicates)} more than once.",
                             hint="Give each column its own name.")
    return header


# ----------------------------------------------------------------------------------------------------------------
# Detecting the shape


def detect_mapping(rows: Sequence[tuple[int, Any]]) -> FieldMapping:
    """Guess the shape and field names from the keys present in most rows (case-insensitive aliases)."""
    dict_rows = [(line, row) for line, row in rows if isinstance(row, dict)]
    if not dict_rows:
        raise InvalidRequest("The file holds no records to look at.",
                             hint="Choose a file with one JSON object per line, a JSON list of objects, "
                             "or a CSV file with a header row.")
    chat = _detect_chat(dict_rows)
    if chat is not None:
        return chat
    common = _common_keys(row for _, row in dict_rows)
    reply = _pick(common, _REPLY_KEYS)
    if reply and "instruction" in common:
        every_key = _common_keys((row for _, row in dict_rows), share=0)
        input_key = _pick(every_key, _INPUT_KEYS) or "input"
        return FieldMapping("alpaca", {"instruction": common["instruction"], "input": input_key, "output": reply})
    prompt = _pick(common, _PROMPT_KEYS)
    if reply and prompt:
        return FieldMapping("prompt_completion", {"prompt": prompt, "completion": reply})
    text = _pick(common, _TEXT_KEYS)
    if text:
        return FieldMapping("text", {"text": text})
    seen = Counter(k for _, row in dict_rows for k in row)
    keys = ", ".join(f'"{k}"' for k, _ in seen.most_common(12)) or "none"
    raise InvalidRequest(
        f"The dataset's shape could not be told from its fields. Fields seen: {keys}. "
        f"Known shapes: {_KNOWN_SHAPES_TEXT}.",
        hint="Choose the shape and fields by hand, or rename the fields in the file to one of these.",
    )


def _common_keys(rows: Any, share: float = 0.5) -> dict[str, str]:
    """Lower-cased key -> the key as spelled in the file, for keys present in at least that share of rows."""
    counts: Counter[str] = Counter()
    n = 0
    for row in rows:
        n += 1
        counts.update(k for k in row if isinstance(k, str))
    need = max(1, int(n * share + 0.5))
    by_lower: dict[str, str] = {}
    for key, count in counts.most_common():
        if count >= need and key.lower() not in by_lower:
            by_lower[key.lower()] = key
    return by_lower


def _pick(common: dict[str, str], aliases: Sequence[str]) -> str | None:
    return next((common[a] for a in aliases if a in common), None)


def _detect_chat(rows: Sequence[tuple[int, Any]]) -> FieldMapping | None:
    common = _common_keys(row for _, row in rows)
    for alias in _CONVERSATION_KEYS:
        key = common.get(alias)
        if key is None:
            continue
        conversations = [_as_list(row.get(key)) for _, row in rows]
        turns = [t for conv in conversations[:1000] if conv for t in conv if isinstance(t, dict)]
        if not turns:
            continue
        inner = _common_keys(turns)
        role_key, content_key = _pick(inner, _ROLE_KEYS), _pick(inner, _CONTENT_KEYS)
        if not role_key or not content_key:
            continue
        sharegpt = role_key.lower() == "from" or content_key.lower() == "value"
        seen = {t[role_key] for conv in conversations if conv for t in conv
                if isinstance(t, dict) and isinstance(t.get(role_key), str)}
        roles = {r: _default_role(r) for r in sorted(seen) if _default_role(r)}
        if sharegpt:
            return FieldMapping("sharegpt", {"conversations": key, "from": role_key, "value": content_key}, roles)
        return FieldMapping("messages", {"messages": key, "role": role_key, "content": content_key}, roles)
    return None


def _default_role(name: str) -> str | None:
    return DEFAULT_ROLES.get(name) or DEFAULT_ROLES.get(name.strip().lower())


def _as_list(value: Any) -> list[Any] | None:
    """A list, or a JSON list kept as text (a CSV cell); None for anything else."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


# ----------------------------------------------------------------------------------------------------------------
# Loading and checking records


def load_dataset(path: str | Path, mapping: FieldMapping | None = None) -> LoadedDataset:
    """Read the file, detect the mapping unless given, and check every record.

    Usable records are in ``records``; every problem is in ``problems`` with its line number.
    Raises InvalidRequest when nothing can be loaded (empty file, no recognisable shape, bad mapping).
    """
    path = Path(path)
    raw = _read(path)
    empty = next((p for p in raw.problems if p.kind == "empty_file"), None)
    if empty is not None:
        reason = empty.message.split(": ", 1)[1].split(";")[0].rstrip(".")
        raise InvalidRequest(f"{path.name} holds no records ({reason}).",
                             hint="Choose a file with one JSON object per line (JSONL), a JSON list of objects, "
                             "or a CSV file with a header row and one record per row.")
    if mapping is None:
        if not raw.rows:
            raise InvalidRequest(f"None of the {_plural(raw.total, 'record')} in {path.name} could be read.",
                                 hint=" ".join(p.message for p in raw.problems[:3]))
        try:
            mapping = detect_mapping(raw.rows)
        except InvalidRequest as e:
            if raw.file_format != "csv":
                raise
            raise InvalidRequest(e.message, hint=e.hint + " A CSV file needs a header row naming its columns; "
                                 "if the first line is a record, add such a line above it.") from None
    mapping = _checked_mapping(mapping, raw.rows, path.name)
    records: list[Record] = []
    problems = list(raw.problems)
    for line, row in raw.rows:
        record, found = _to_record(line, row, mapping)
        problems.extend(found)
        if record is not None:
            records.append(record)
    problems.sort(key=lambda p: p.line)
    return LoadedDataset(path, raw.file_format, mapping, records, problems, raw.total, raw.notes)


def _checked_mapping(mapping: FieldMapping, rows: Sequence[tuple[int, Any]], name: str) -> FieldMapping:
    """The mapping with defaults filled in; raises when it cannot work for this file at all."""
    if mapping.shape not in SHAPES:
        raise InvalidRequest(f'Unknown dataset shape "{mapping.shape}".',
                             hint="Choose one of: " + ", ".join(SHAPE_TITLES.values()) + ".")
    defaults = DEFAULT_FIELDS[mapping.shape]
    unknown = [k for k in mapping.fields if k not in defaults]
    if unknown:
        raise InvalidRequest(f"The {SHAPE_TITLES[mapping.shape]} mapping has no part called "
                             f"{', '.join(repr(k) for k in unknown)}.",
                             hint="It takes: " + ", ".join(defaults) + ".")
    fields = {**defaults, **{k: v for k, v in mapping.fields.items() if v}}
    roles = dict(mapping.roles)
    if mapping.shape in ("messages", "sharegpt"):
        roles = roles or dict(DEFAULT_ROLES)
        wrong = {k: v for k, v in roles.items() if v not in CANONICAL_ROLES}
        if wrong:
            k, v = next(iter(wrong.items()))
            raise InvalidRequest(f'The role "{k}" is mapped to "{v}", which is not a chat role.',
                                 hint="Map each role to system, user or assistant.")
    seen = {k for _, row in rows if isinstance(row, dict) for k in row}
    if rows:
        for part in _REQUIRED[mapping.shape]:
            if fields[part] not in seen:
                raise InvalidRequest(
                    f'The field "{fields[part]}" chosen for {part} is in none of the records of {name}. '
                    f"Fields seen: {', '.join(repr(k) for k in sorted(seen)[:12])}.",
                    hint=f"Choose one of these for {part}.")
    return FieldMapping(mapping.shape, fields, roles, mapping.system_prompt)


class _Found:
    """The problems of one record: at most one of each kind, so one bad record does not flood the list."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.problems: list[DatasetProblem] = []

    def add(self, kind: str, detail: str, dropped: bool = True) -> None:
        if all(p.kind != kind for p in self.problems):
            self.problems.append(_problem(self.line, kind, detail, dropped))

    @property
    def dropped(self) -> bool:
        return any(p.dropped for p in self.problems)


def _to_record(line: int, row: dict[str, Any], mapping: FieldMapping) -> tuple[Record | None, list[DatasetProblem]]:
    found = _Found(line)
    if mapping.shape in ("messages", "sharegpt"):
        messages = _chat_messages(row, mapping, found)
    elif mapping.shape == "text":
        text = _field_text(row, mapping.fields["text"], "the text", found)
        if text is not None and not text.strip():
            found.add("empty_text", f'the text ("{mapping.fields["text"]}") is empty; write it or remove the record')
        if found.dropped or text is None:
            return None, found.problems
        return Record(line, None, text), found.problems
    else:
        messages = _pair_messages(row, mapping, found)
    if found.dropped or messages is None:
        return None, found.problems
    system = (mapping.system_prompt or "").strip()
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": mapping.system_prompt or ""})
    return Record(line, tuple(messages), None), found.problems


def _pair_messages(row: dict[str, Any], mapping: FieldMapping, found: _Found) -> list[dict[str, str]] | None:
    """Alpaca and prompt/completion: one user turn, one assistant turn."""
    f = mapping.fields
    alpaca = mapping.shape == "alpaca"
    prompt_key, reply_key = (f["instruction"], f["output"]) if alpaca else (f["prompt"], f["completion"])
    what = "the instruction" if alpaca else "the prompt"
    prompt = _field_text(row, prompt_key, what, found)
    reply = _field_text(row, reply_key, "the reply", found)
    extra = ""
    if alpaca and row.get(f["input"]) is not None:
        extra = _field_text(row, f["input"], "the input", found) or ""
    if prompt is not None and not prompt.strip():
        found.add("empty_prompt", f'{what} ("{prompt_key}") is empty; write it or remove the record')
    if reply is not None and not reply.strip():
        found.add("empty_reply", f'the reply ("{reply_key}") is empty; write the reply or remove the record')
    if found.dropped or prompt is None or reply is None:
        return None
    user = f"{prompt}\n\n{extra}" if extra.strip() else prompt
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def _chat_messages(row: dict[str, Any], mapping: FieldMapping, found: _Found) -> list[dict[str, str]] | None:
    f = mapping.fields
    sharegpt = mapping.shape == "sharegpt"
    conv_key = f["conversations"] if sharegpt else f["messages"]
    role_key = f["from"] if sharegpt else f["role"]
    content_key = f["value"] if sharegpt else f["content"]
    value = row.get(conv_key)
    if value is None:
        found.add("missing_field", f'the field "{conv_key}" is missing; each record needs a "{conv_key}" list of '
                  "turns (or change the field mapping)")
        return None
    turns = _as_list(value)
    if turns is None:
        found.add("wrong_type", f'"{conv_key}" should be a list of turns but is {_kind_of(value)}')
        return None
    messages: list[dict[str, str]] = []
    empty_reply = False
    for n, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            found.add("wrong_type", f'turn {n} should be an object with "{role_key}" and "{content_key}" '
                      f"but is {_kind_of(turn)}")
            continue
        if role_key not in turn:
            found.add("missing_field", f'turn {n} has no "{role_key}" field; add one (system, user or assistant)')
            continue
        name = turn[role_key]
        role = _resolve_role(name, mapping.roles)
        if role is None:
            known = ", ".join(sorted(mapping.roles)) or "none"
            found.add("unknown_role", f'turn {n} has the role "{name}", which the mapping does not know (it knows: '
                      f"{known}); map it to system, user or assistant, or fix the record")
            continue
        if content_key not in turn:
            found.add("missing_field", f'turn {n} ({name}) has no "{content_key}" field; add the text of the turn')
            continue
        content = _as_text(turn[content_key])
        if content is None:
            found.add("wrong_type", f'turn {n} ({name}): "{content_key}" should be text but is '
                      f"{_kind_of(turn[content_key])}")
            continue
        if not content.strip():
            if role == "assistant":
                empty_reply = True
                found.add("empty_reply", f"turn {n} ({name}) is an empty reply; write the reply or remove the turn")
            elif role == "user":
                found.add("empty_message", f"turn {n} ({name}) is empty; write the message or remove the turn")
            else:
                found.add("empty_system", f"turn {n} ({name}) is an empty system message; it was left out of the "
                          "conversation", dropped=False)
            continue
        if role == "system" and messages:
            # Most chat templates accept a system message only at the start.
            found.add("misplaced_system", f"turn {n} ({name}) is a system message in the middle of the "
                      "conversation; move it to the start or remove it")
            continue
        messages.append({"role": role, "content": content})
    if not turns:
        found.add("no_reply", f'the "{conv_key}" list is empty; add the conversation or remove the record')
    elif not empty_reply and not found.dropped and not any(m["role"] == "assistant" for m in messages):
        found.add("no_reply", "the conversation has no assistant reply to learn from; add one or remove the record")
    return None if found.dropped else messages


def _resolve_role(name: Any, roles: dict[str, str]) -> str | None:
    if not isinstance(name, str):
        return None
    if name in roles:
        return roles[name]
    lowered = name.strip().lower()
    return next((v for k, v in roles.items() if k.lower() == lowered), None)


def _field_text(row: dict[str, Any], key: str, what: str, found: _Found) -> str | None:
    if key not in row or row[key] is None:
        found.add("missing_field", f'the field "{key}" ({what}) is missing; add it or change the field mapping')
        return None
    text = _as_text(row[key])
    if text is None:
        found.add("wrong_type", f'the field "{key}" ({what}) should be text but is {_kind_of(row[key])}')
    return text


def _as_text(value: Any) -> str | None:
    """Text from a field value: strings, numbers, null (empty), and OpenAI-style lists of text parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Length limit and split


def apply_length_limit(data: LoadedDataset, token_counts: Sequence[int], max_tokens: int,
                       policy: str) -> LoadedDataset:
    """Report every record longer than max_tokens, and drop it or keep it to be truncated.

    token_counts[i] belongs to data.records[i] (counted by the caller with the model's tokenizer).
    Call it on the dataset from load_dataset: calling it twice reports the long records twice.
    """
    if policy not in LENGTH_POLICIES:
        raise InvalidRequest(f'Unknown policy for long records: "{policy}".', hint='Choose "drop" or "truncate".')
    if max_tokens < 1:
        raise InvalidRequest(f"The maximum length must be at least 1 token, not {max_tokens}.",
                             hint="Choose a maximum length such as 1024 or 2048 tokens.")
    if len(token_counts) != len(data.records):
        raise ValueError(f"{len(token_counts)} token counts for {len(data.records)} records")
    kept: list[Record] = []
    long: list[DatasetProblem] = []
    for record, count in zip(data.records, token_counts, strict=True):
        if count <= max_tokens:
            kept.append(record)
            continue
        over = f"the record is {count:,} tokens long, over the maximum length of {max_tokens:,}"
        if policy == "drop":
            long.append(_problem(record.line, "too_long", f"{over}; it is left out (raise the maximum length, "
                                 "or choose to truncate long records to keep it)", True))
        else:
            kept.append(record)
            long.append(_problem(record.line, "too_long", f"{over}; it will be cut to {max_tokens:,} tokens and "
                                 "its end will not be learned", False))
    problems = sorted([*data.problems, *long], key=lambda p: p.line)
    return replace(data, records=kept, problems=problems)


def split(records: Sequence[Record], validation_fraction: float = 0.1,
          seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, validation), each in file order; which records go where is a seeded shuffle, so it repeats.

    With fewer than MIN_RECORDS_FOR_VALIDATION records there is no validation set (the caller says so).
    """
    if not 0 <= validation_fraction < 1:
        raise InvalidRequest(f"The validation share must be from 0 to below 1, not {validation_fraction}.",
                             hint="Use for example 0.1 to keep 10 % of the records for validation.")
    n = len(records)
    if n < MIN_RECORDS_FOR_VALIDATION or validation_fraction == 0:
        return list(records), []
    n_val = min(n - 1, max(1, round(n * validation_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    chosen = set(order[:n_val])
    train = [r for i, r in enumerate(records) if i not in chosen]
    validation = [r for i, r in enumerate(records) if i in chosen]
    return train, validation


# ----------------------------------------------------------------------------------------------------------------
# Small helpers


def _problem(line: int, kind: str, detail: str, dropped: bool) -> DatasetProblem:
    return DatasetProblem(line, kind, f"Line {line}: {detail}.", dropped)


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _show(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"
