from __future__ import annotations

import json

import pytest

from desktop_llm.core import user_presets as up
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.presets import BUILTIN_PRESETS, preset_named
from desktop_llm.core.sampling import SamplingParams


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh app home per test: the session's home is shared by every test."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(folder))
    return folder


def names(presets):
    return [p.name for p in presets]


def test_a_new_home_lists_only_the_builtins():
    presets = up.all_presets()
    assert names(presets) == [p.name for p in BUILTIN_PRESETS]
    assert all(p.builtin for p in presets)
    assert up.user_presets() == []
    assert up.presets_problem() is None


def test_save_list_overwrite_rename_delete(home):
    playground = SamplingParams(temperature=0.3, top_k=12, stop=["###"], seed=42, logit_bias={7: -100.0})
    saved = up.save_preset("  Code review ", playground, "Terse and steady")
    assert saved.name == "Code review" and not saved.builtin
    up.save_preset("Wild", {"temperature": 1.6, "top_p": 0.99})

    assert names(up.all_presets()) == [p.name for p in BUILTIN_PRESETS] + ["Code review", "Wild"]
    found = up.find_preset("code review")
    assert found is not None and found.description == "Terse and steady"
    # Reapplying a preset saved from the Playground gives back exactly the Playground's settings.
    assert found.apply(SamplingParams(temperature=1.9, max_tokens=3)) == playground
    # A preset saved from a few values changes only those.
    wild = up.find_preset("Wild")
    assert wild.values == {"temperature": 1.6, "top_p": 0.99}
    assert wild.apply(SamplingParams(max_tokens=99)) == SamplingParams(temperature=1.6, top_p=0.99, max_tokens=99)

    # Saving under an existing name (any case) overwrites it in place.
    up.save_preset("WILD", {"temperature": 1.2})
    assert names(up.user_presets()) == ["Code review", "WILD"]
    assert up.find_preset("wild").values == {"temperature": 1.2}

    up.rename_preset("Code review", "Reviewing code")
    assert names(up.user_presets()) == ["Reviewing code", "WILD"]
    assert up.find_preset("Reviewing code").apply(SamplingParams()) == playground
    assert up.find_preset("Code review") is None

    up.delete_preset("wild")
    assert names(up.user_presets()) == ["Reviewing code"]

    on_disk = json.loads((home / "presets.json").read_text(encoding="utf-8"))
    assert on_disk["version"] == 1
    assert [p["name"] for p in on_disk["presets"]] == ["Reviewing code"]
    assert on_disk["presets"][0]["values"]["stop"] == ["###"]


@pytest.mark.parametrize("name", ["Balanced", "precise", " Creative "])
def test_builtin_names_cannot_be_saved_renamed_or_deleted(name):
    with pytest.raises(InvalidRequest, match="built-in"):
        up.save_preset(name, {"temperature": 0.5})
    up.save_preset("Mine", {"temperature": 0.5})
    with pytest.raises(InvalidRequest, match="built-in preset and cannot be renamed"):
        up.rename_preset(name, "Other")
    with pytest.raises(InvalidRequest, match="built-in"):
        up.rename_preset("Mine", name)
    with pytest.raises(InvalidRequest, match="built-in preset and cannot be deleted"):
        up.delete_preset(name)
    assert names(up.user_presets()) == ["Mine"]
    assert preset_named("Balanced") is not None


@pytest.mark.parametrize(("name", "words"), [
    ("", "needs a name"), ("   ", "needs a name"), ("x" * 61, "at most 60 characters"),
    ("two\nlines", "line breaks"),
])
def test_bad_names_are_refused(name, words):
    with pytest.raises(InvalidRequest, match=words):
        up.save_preset(name, {"temperature": 0.5})
    assert up.user_presets() == []


def test_sixty_characters_is_allowed():
    assert up.save_preset("x" * 60, {}).name == "x" * 60


def test_out_of_range_and_unknown_values_are_refused_by_name():
    with pytest.raises(InvalidRequest, match=r"Temperature \(temperature\) is 9, outside its range 0 to 5") as err:
        up.save_preset("Hot", {"temperature": 9})
    assert "0 to 5" in err.value.hint
    with pytest.raises(InvalidRequest, match="'topp'"):
        up.save_preset("Typo", {"topp": 0.5})
    with pytest.raises(InvalidRequest, match=r"Top-k \(top_k\) must be a whole number"):
        up.save_preset("Half", {"top_k": 2.5})
    with pytest.raises(InvalidRequest, match="stop"):
        up.save_preset("Stops", {"stop": "END"})
    assert up.user_presets() == []


def test_rename_onto_another_preset_or_a_missing_one_is_refused():
    up.save_preset("A", {"temperature": 0.1})
    up.save_preset("B", {"temperature": 0.2})
    with pytest.raises(InvalidRequest, match="already exists"):
        up.rename_preset("A", "b")
    with pytest.raises(InvalidRequest, match="no saved preset named 'C'"):
        up.rename_preset("C", "D")
    with pytest.raises(InvalidRequest, match="no saved preset"):
        up.delete_preset("C")
    up.rename_preset("a", "A")  # only the case changes
    assert names(up.user_presets()) == ["A", "B"]


def test_export_then_import_round_trip(tmp_path):
    params = SamplingParams(temperature=0.4, json_schema={"type": "object"}, stop=["\n\n"], logit_bias={3: 2.5})
    up.save_preset("Schema", params, "JSON out")
    file = up.export_preset("Schema", tmp_path / "schema.json")
    exported = json.loads(file.read_text(encoding="utf-8"))
    assert exported["desktop_llm_preset"] == 1 and exported["name"] == "Schema"

    up.delete_preset("Schema")
    (imported,) = up.import_presets(file)
    assert (imported.name, imported.description) == ("Schema", "JSON out")
    assert imported.apply(SamplingParams()) == params
    assert names(up.user_presets()) == ["Schema"]

    # Importing again overwrites the user's preset of that name rather than adding a second one.
    up.save_preset("Schema", {"temperature": 1.0})
    up.import_presets(file)
    assert names(up.user_presets()) == ["Schema"]
    assert up.find_preset("Schema").apply(SamplingParams()) == params


def test_an_exported_builtin_comes_back_as_imported(tmp_path):
    file = up.export_preset("Precise", tmp_path / "precise.json")
    (imported,) = up.import_presets(file)
    assert imported.name == "Precise (imported)" and not imported.builtin
    assert imported.values == preset_named("Precise").values
    assert names(up.all_presets())[-1] == "Precise (imported)"
    assert up.find_preset("Precise").builtin  # the built-in is untouched


def test_import_a_list_and_a_bare_object(tmp_path):
    listed = tmp_path / "two.json"
    listed.write_text(json.dumps([{"name": "One", "values": {"top_k": 5}},
                                  {"desktop_llm_preset": 1, "name": "Two", "description": "d",
                                   "values": {"min_p": 0.2}}]), encoding="utf-8")
    assert names(up.import_presets(listed)) == ["One", "Two"]
    bare = tmp_path / "bare.json"
    bare.write_text('{"name": "Three", "values": {"temperature": 0.0}}', encoding="utf-8")
    assert names(up.import_presets(bare)) == ["Three"]
    assert names(up.user_presets()) == ["One", "Two", "Three"]
    assert up.find_preset("Two").values == {"min_p": 0.2}


def test_malformed_json_is_refused_with_its_line(tmp_path):
    file = tmp_path / "broken.json"
    file.write_text('{\n  "name": "X",\n  "values": {"temperature": 0.5,}\n}\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match=r"broken.json is not valid JSON: .* at line 3, column \d+") as err:
        up.import_presets(file)
    assert err.value.hint
    assert up.user_presets() == []


@pytest.mark.parametrize(("content", "words"), [
    ('"just text"', "broken.json is not a preset: it holds a text"),
    ("[]", "holds no presets"),
    ('{"values": {"temperature": 0.5}}', "The preset in broken.json has no name"),
    ('{"name": "X"}', "Preset 'X' in broken.json has no values"),
    ('{"name": "X", "values": {"temprature": 0.5}}',
     "Preset 'X' in broken.json: Unknown sampling parameter 'temprature'"),
    ('{"name": "X", "values": {"top_p": 7}}', r"Preset 'X' in broken.json: Top-p \(top_p\) is 7, outside its range"),
    ('{"name": "X", "values": {"logit_bias": {"5": 500}}}', "bias of token 5 is 500"),
    ('{"desktop_llm_preset": 2, "name": "X", "values": {}}', "format 2"),
])
def test_bad_import_files_say_what_and_where(tmp_path, content, words):
    file = tmp_path / "broken.json"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidRequest, match=words) as err:
        up.import_presets(file)
    assert err.value.hint


def test_one_bad_preset_in_a_list_saves_none_of_them(tmp_path):
    file = tmp_path / "mixed.json"
    file.write_text(json.dumps([{"name": "Good", "values": {"top_k": 5}},
                                {"name": "Bad", "values": {"max_tokens": 0}}]), encoding="utf-8")
    with pytest.raises(InvalidRequest, match=r"Preset 2 \('Bad'\) in mixed.json: Max tokens \(max_tokens\) is 0"):
        up.import_presets(file)
    assert up.user_presets() == []


def test_a_missing_import_file_is_reported(tmp_path):
    with pytest.raises(InvalidRequest, match="Could not read"):
        up.import_presets(tmp_path / "nope.json")


def test_a_damaged_presets_file_is_kept_reported_and_moved_aside_on_save(home):
    home.mkdir(parents=True, exist_ok=True)
    file = home / "presets.json"
    damaged = '{"version": 1, "presets": [{"name": "Lost", "values": {"temperature": 0.3}'
    file.write_text(damaged, encoding="utf-8")

    assert up.user_presets() == []
    assert names(up.all_presets()) == [p.name for p in BUILTIN_PRESETS]
    problem = up.presets_problem()
    assert problem is not None and "not valid JSON" in problem and "line 1" in problem
    assert file.read_text(encoding="utf-8") == damaged  # reading never rewrites it

    up.save_preset("Fresh", {"temperature": 0.9})
    (aside,) = home.glob("presets.json.bad-*")
    assert aside.read_text(encoding="utf-8") == damaged
    assert names(up.user_presets()) == ["Fresh"]
    assert up.presets_problem() is None


def test_a_wrong_shape_keeps_the_good_presets_and_reports_the_rest(home):
    home.mkdir(parents=True, exist_ok=True)
    file = home / "presets.json"
    file.write_text(json.dumps({"version": 1, "presets": [
        {"name": "Kept", "description": "", "values": {"top_k": 3}},
        {"name": "Broken", "description": "", "values": {"temperature": "hot"}},
    ]}), encoding="utf-8")
    assert names(up.user_presets()) == ["Kept"]
    assert "Broken" in up.presets_problem()

    up.delete_preset("Kept")
    assert len(list(home.glob("presets.json.bad-*"))) == 1
    assert up.user_presets() == [] and up.presets_problem() is None


def test_an_object_without_a_presets_list_is_reported():
    up.presets_file().write_text('["not", "presets"]', encoding="utf-8")
    assert up.user_presets() == []
    assert "presets" in up.presets_problem()


def test_a_file_saved_with_a_byte_order_mark_imports(tmp_path):
    file = tmp_path / "windows.json"
    file.write_bytes(b"\xef\xbb\xbf" + json.dumps({"name": "Notepad", "values": {"top_k": 9}}).encode())
    assert names(up.import_presets(file)) == ["Notepad"]
