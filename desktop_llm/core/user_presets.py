"""The Playground's sampling presets saved by the user, next to the built-in ones; export and import.

Saved in ``app_home() / "presets.json"``::

    {"version": 1, "presets": [{"name": ..., "description": ..., "values": {...}}, ...]}

``values`` holds the sampling values the preset sets, normalized as in ``SamplingParams.to_dict``
(logit_bias keys as text): every field when saved from a ``SamplingParams`` (the Playground's "Save
as preset"), only the given keys when saved from a mapping (an imported built-in stays partial, like
the built-ins). ``Preset.apply`` sets exactly those keys and leaves the others as they are.

Names are compared without regard to case ("balanced" is the built-in "Balanced"). A damaged
presets.json is never overwritten in place: ``user_presets()`` returns what it could read,
``presets_problem()`` says why, and the next save first moves the file aside to
``presets.json.bad-<timestamp>``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from desktop_llm.core.atomic_file import write_json_atomic
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.paths import app_home
from desktop_llm.core.presets import BUILTIN_PRESETS, Preset
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.sampling_fields import BY_NAME, check_values

PRESETS_FILE = "presets.json"
FILE_VERSION = 1
EXPORT_KEY = "desktop_llm_preset"
EXPORT_VERSION = 1
MAX_NAME = 60
IMPORTED_SUFFIX = " (imported)"

_DEFAULTS = SamplingParams()
_KNOWN = tuple(f.name for f in fields(SamplingParams))
_IMPORT_HINT = "Choose a preset file exported from desktop_llm, or correct the file and import it again."


@dataclass(frozen=True)
class PresetEntry(Preset):
    """A preset as the Playground lists it: built-in (read-only) or saved by the user."""

    builtin: bool = False


def presets_file() -> Path:
    return app_home() / PRESETS_FILE


# -- reading -------------------------------------------------------------------------------------
def all_presets() -> list[PresetEntry]:
    """The built-in presets (``builtin=True``) first, then the user's in saved order."""
    return [_builtin(p) for p in BUILTIN_PRESETS] + user_presets()


def user_presets() -> list[PresetEntry]:
    """The user's saved presets; [] (never an exception) when presets.json is missing or damaged."""
    return _load()[0]


def presets_problem() -> str | None:
    """Why presets.json could not be read (fully), for the user; None when it is fine or absent."""
    return _load()[1]


def find_preset(name: str) -> PresetEntry | None:
    """The built-in or saved preset called ``name`` (case does not matter), else None."""
    key = name.strip().casefold()
    return next((p for p in all_presets() if p.name.casefold() == key), None)


# -- changing ------------------------------------------------------------------------------------
def save_preset(name: str, values: dict[str, Any] | SamplingParams, description: str = "") -> PresetEntry:
    """Create the user preset ``name``, or overwrite the one with that name; returns it as saved.

    Refuses built-in names, empty names, names over 60 characters, unknown parameters and values
    outside the Playground's ranges (``InvalidRequest`` naming the field and its range).
    """
    name = _check_name(name)
    if not isinstance(description, str):
        raise InvalidRequest("A preset's description must be text.")
    preset = PresetEntry(name, description.strip(), _normalize(values))
    presets = _replace(user_presets(), preset)
    _write(presets)
    return preset


def rename_preset(old: str, new: str) -> PresetEntry:
    """Rename the user preset ``old`` to ``new`` (same place in the list); returns it renamed."""
    presets = user_presets()
    index = _user_index(presets, old, "renamed")
    new = _check_name(new)
    clash = _index(presets, new)
    if clash is not None and clash != index:
        raise InvalidRequest(f"A preset named {presets[clash].name!r} already exists.",
                             "Choose another name, or delete that preset first.")
    renamed = PresetEntry(new, presets[index].description, presets[index].values)
    presets[index] = renamed
    _write(presets)
    return renamed


def delete_preset(name: str) -> None:
    """Delete the user preset ``name``; built-in presets cannot be deleted."""
    presets = user_presets()
    del presets[_user_index(presets, name, "deleted")]
    _write(presets)


# -- export and import ---------------------------------------------------------------------------
def export_preset(name: str, path: str | Path) -> Path:
    """Write preset ``name`` (built-in or saved) to ``path`` as a file ``import_presets`` reads."""
    preset = find_preset(name)
    if preset is None:
        raise InvalidRequest(f"There is no preset named {name!r} to export.")
    path = Path(path)
    data = {EXPORT_KEY: EXPORT_VERSION, "name": preset.name, "description": preset.description,
            "values": dict(preset.values)}
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        raise InvalidRequest(f"Could not write the preset to {path}: {exc.strerror or exc}.",
                             "Choose a folder you can write to.") from exc
    return path


def import_presets(path: str | Path) -> list[PresetEntry]:
    """Read presets from ``path`` and save them; returns them as saved (with their final names).

    Reads a file written by ``export_preset``, a list of them, a bare ``{"name", "values"}`` object
    or a presets.json. Every problem is an ``InvalidRequest`` saying what is wrong and where, and
    then nothing is saved. A built-in's name gets " (imported)" appended; a saved preset with the
    same name is overwritten.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark from a Windows editor is fine
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{path.name} is not a text file (byte {exc.start} is not UTF-8).",
                             _IMPORT_HINT) from exc
    except OSError as exc:
        raise InvalidRequest(f"Could not read {path}: {exc.strerror or exc}.",
                             "Check that the file exists and that you may read it.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}.", _IMPORT_HINT) from exc

    entries, numbered = _entries_in(data, path.name)
    incoming: list[PresetEntry] = []
    for number, entry in enumerate(entries, 1):
        preset = _entry_from_file(entry, number if numbered else None, path.name)
        if _is_builtin(preset.name):
            preset = PresetEntry(_imported_name(preset.name), preset.description, preset.values)
        if _index(incoming, preset.name) is not None:
            raise InvalidRequest(f"{path.name} has two presets named {preset.name!r}.",
                                 "Rename one of them in the file and import it again.")
        incoming.append(preset)

    presets = user_presets()
    for preset in incoming:
        presets = _replace(presets, preset)
    _write(presets)
    return incoming


def _entries_in(data: Any, file_name: str) -> tuple[list[Any], bool]:
    """The preset objects in an import file, and whether to number them in messages."""
    if isinstance(data, dict) and "presets" in data and "values" not in data:
        data = data["presets"]  # a presets.json copied from another machine
    if isinstance(data, list):
        if not data:
            raise InvalidRequest(f"{file_name} holds no presets.", _IMPORT_HINT)
        return data, len(data) > 1
    if isinstance(data, dict):
        return [data], False
    raise InvalidRequest(f"{file_name} is not a preset: it holds {_json_kind(data)}, not an object "
                         "with a name and values.", _IMPORT_HINT)


def _entry_from_file(entry: Any, number: int | None, file_name: str | None) -> PresetEntry:
    """One preset object from an import file (``number`` counts from 1 when the file holds several)
    or from presets.json (``file_name`` None); problems name the preset and the file."""
    def where(name: str | None = None) -> str:
        text = f"Preset {number}" if number is not None else "The preset"
        if name:
            text = f"{text} ({name!r})" if number is not None else f"Preset {name!r}"
        return f"{text} in {file_name}" if file_name else text

    if not isinstance(entry, dict):
        raise InvalidRequest(f"{where()} is {_json_kind(entry)}, not an object with a name and values.",
                             _IMPORT_HINT)
    version = entry.get(EXPORT_KEY, EXPORT_VERSION)
    if version != EXPORT_VERSION:
        raise InvalidRequest(f"{where()} is in preset format {version!r}; this version of desktop_llm "
                             f"reads format {EXPORT_VERSION}.", "Update desktop_llm to import it.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"{where()} has no name.", 'Add a "name" to the preset in the file.')
    here = where(name.strip())
    try:
        name = _check_name(name, builtin_ok=True)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{here}: {exc.message}", exc.hint) from None
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise InvalidRequest(f"{here}: the description must be text.", _IMPORT_HINT)
    if "values" not in entry:
        raise InvalidRequest(f"{here} has no values.", 'Add its sampling "values" to the file.')
    try:
        values = _normalize(entry["values"])
    except InvalidRequest as exc:
        raise InvalidRequest(f"{here}: {exc.message}", exc.hint or _IMPORT_HINT) from None
    return PresetEntry(name, description.strip(), values)


def _imported_name(name: str) -> str:
    base = name[: MAX_NAME - len(IMPORTED_SUFFIX)].rstrip()
    return base + IMPORTED_SUFFIX


# -- checks --------------------------------------------------------------------------------------
def _check_name(name: Any, builtin_ok: bool = False) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("A preset needs a name.", "Type a name for it.")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"A preset's name can be at most {MAX_NAME} characters; this one has {len(name)}.",
                             "Choose a shorter name.")
    if any(not ch.isprintable() for ch in name):
        raise InvalidRequest("A preset's name cannot contain line breaks, tabs or other control characters.",
                             "Choose a name on one line.")
    if not builtin_ok and _is_builtin(name):
        builtin = next(p.name for p in BUILTIN_PRESETS if p.name.casefold() == name.casefold())
        raise InvalidRequest(f"{builtin!r} is a built-in preset and cannot be replaced.",
                             "Choose another name for your preset.")
    return name


def _normalize(values: Any) -> dict[str, Any]:
    """Checked sampling values -> what presets.json stores (only the keys given; all for SamplingParams)."""
    if isinstance(values, SamplingParams):
        values = values.to_dict()
    if not isinstance(values, dict):
        raise InvalidRequest(f"The values must be an object of sampling parameters, not {_json_kind(values)}.")
    unknown = [k for k in values if k not in _KNOWN]
    if unknown:
        listed = ", ".join(repr(k) for k in unknown)
        raise InvalidRequest(f"Unknown sampling parameter{'s' if len(unknown) > 1 else ''} {listed}.",
                             f"Known parameters: {', '.join(_KNOWN)}.")
    values = {key: _check_type(key, value) for key, value in values.items()}
    try:
        params = check_values(values)
    except (TypeError, ValueError, AttributeError) as exc:  # a value of a shape from_dict does not expect
        raise InvalidRequest(f"A sampling value has the wrong form: {exc}.") from None
    full = params.to_dict()
    return {key: full[key] for key in values}


def _check_type(key: str, value: Any) -> Any:
    """``value`` if it has the form ``key`` takes (whole numbers written 40.0 become 40), else refused."""
    label = f"{BY_NAME[key].label} ({key})" if key in BY_NAME else key
    default = getattr(_DEFAULTS, key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, float) and not number:
        raise InvalidRequest(f"{label} must be a number, not {value!r}.")
    if isinstance(default, int) and not isinstance(default, bool) and not (
            number and float(value).is_integer()):
        raise InvalidRequest(f"{label} must be a whole number, not {value!r}.")
    if key == "seed" and value is not None and not (number and float(value).is_integer()):
        raise InvalidRequest(f"{label} must be a whole number or null (random), not {value!r}.")
    if key == "stop" and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        raise InvalidRequest(f"{label} must be a list of texts, not {value!r}.")
    if key == "logit_bias":
        if not isinstance(value, dict):
            raise InvalidRequest(f"{label} must be an object of token id: bias, not {value!r}.")
        for token, bias in value.items():
            if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
                raise InvalidRequest(f"{label}: the bias of token {token} is {bias!r}; it must be a number "
                                     "from -100 to 100.", "Use -100 to ban a token, 0 for no change.")
    if key == "grammar" and value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{label} must be text or null, not {value!r}.")
    if key == "json_schema" and value is not None and not isinstance(value, dict | str):
        raise InvalidRequest(f"{label} must be a JSON schema object or null, not {value!r}.")
    if number and (key == "seed" or (isinstance(default, int) and not isinstance(default, bool))):
        return int(value)
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")


# -- the file ------------------------------------------------------------------------------------
def _builtin(preset: Preset) -> PresetEntry:
    return PresetEntry(preset.name, preset.description, dict(preset.values), builtin=True)


def _is_builtin(name: str) -> bool:
    return any(p.name.casefold() == name.strip().casefold() for p in BUILTIN_PRESETS)


def _index(presets: list[PresetEntry], name: str) -> int | None:
    key = name.strip().casefold()
    return next((i for i, p in enumerate(presets) if p.name.casefold() == key), None)


def _user_index(presets: list[PresetEntry], name: str, verb: str) -> int:
    if _is_builtin(name):
        raise InvalidRequest(f"{name.strip()!r} is a built-in preset and cannot be {verb}.",
                             "Save a copy under another name to change it.")
    index = _index(presets, name)
    if index is None:
        raise InvalidRequest(f"There is no saved preset named {name!r}.")
    return index


def _replace(presets: list[PresetEntry], preset: PresetEntry) -> list[PresetEntry]:
    """``presets`` with ``preset`` in place of the one with its name, or added at the end."""
    presets = list(presets)
    index = _index(presets, preset.name)
    if index is None:
        presets.append(preset)
    else:
        presets[index] = preset
    return presets


def _load() -> tuple[list[PresetEntry], str | None]:
    file = presets_file()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError) as exc:
        return [], _problem(file, f"it cannot be read: {exc}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], _problem(file, f"it is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
    if not isinstance(data, dict) or not isinstance(data.get("presets"), list):
        return [], _problem(file, 'it is not an object with a "presets" list')
    if data.get("version") != FILE_VERSION:
        return [], _problem(file, f"it is version {data.get('version')!r}, and this app reads version "
                                  f"{FILE_VERSION}")
    presets: list[PresetEntry] = []
    skipped: list[str] = []
    for number, entry in enumerate(data["presets"], 1):
        try:
            preset = _entry_from_file(entry, number, None)
            if _is_builtin(preset.name) or _index(presets, preset.name) is not None:
                raise InvalidRequest(f"Preset {number} repeats the name {preset.name!r}.")
        except InvalidRequest as exc:
            skipped.append(exc.message)
            continue
        presets.append(preset)
    if skipped:
        return presets, _problem(file, "some presets in it were skipped: " + " ".join(skipped))
    return presets, None


def _problem(file: Path, why: str) -> str:
    return (f"Your saved presets in {file} could not all be read: {why}. The file is left as it is; "
            f"the next time you save a preset it is moved aside to {file.name}.bad-<date> and a new one "
            "is started.")


def _write(presets: list[PresetEntry]) -> None:
    file = presets_file()
    if file.exists() and _load()[1] is not None:
        _move_aside(file)
    data = {"version": FILE_VERSION,
            "presets": [{"name": p.name, "description": p.description, "values": p.values} for p in presets]}
    try:
        write_json_atomic(file, data)
    except OSError as exc:
        raise InvalidRequest(f"Could not save your presets to {file}: {exc.strerror or exc}.",
                             "Check that the data folder is writable and the disk is not full.") from exc


def _move_aside(file: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = file.with_name(f"{file.name}.bad-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = file.with_name(f"{file.name}.bad-{stamp}-{n}")
    file.replace(target)
    return target
