"""Fine-tune datasets: every shape detected, every bad record reported with its line, length limit, split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_llm.core.datasets import (
    DatasetProblem,
    FieldMapping,
    Record,
    apply_length_limit,
    detect_mapping,
    load_dataset,
    read_rows,
    split,
)
from desktop_llm.core.errors import InvalidRequest


def write_jsonl(path: Path, lines: list[object | str]) -> Path:
    """Objects are dumped as JSON; strings are written as they are (for broken lines)."""
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def turns(data) -> list[list[dict[str, str]]]:
    return [list(r.messages) for r in data.records]


# ---------------------------------------------------------------------------------------------------------------
# Each shape is detected, and gives the messages the trainer needs


def test_messages_shape_keeps_multi_turn_and_a_first_system_turn(tmp_path):
    conv = [system("Be brief."), user("Hi"), assistant("Hello."), user("Bye"), assistant("Bye!")]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": conv}, {"messages": [user("2+2?"), assistant("4")]}])

    data = load_dataset(path)

    assert data.file_format == "jsonl"
    assert data.mapping.shape == "messages"
    assert data.mapping.fields == {"messages": "messages", "role": "role", "content": "content"}
    assert turns(data) == [conv, [user("2+2?"), assistant("4")]]
    assert [r.line for r in data.records] == [1, 2]
    assert data.problems == []
    assert data.summary() == "2 records: 2 usable, no problems"


def test_sharegpt_shape_maps_its_roles(tmp_path):
    row = {"conversations": [{"from": "system", "value": "Rhyme."}, {"from": "human", "value": "Cat?"},
                             {"from": "gpt", "value": "Hat."}]}
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [row, row])

    data = load_dataset(path)

    assert data.mapping.shape == "sharegpt"
    assert data.mapping.fields == {"conversations": "conversations", "from": "from", "value": "value"}
    assert data.mapping.roles == {"gpt": "assistant", "human": "user", "system": "system"}
    assert "human → user" in data.mapping.describe() and "gpt → assistant" in data.mapping.describe()
    assert turns(data)[0] == [system("Rhyme."), user("Cat?"), assistant("Hat.")]


def test_alpaca_shape_joins_instruction_and_input(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Name a fruit.", "output": "Apple."},  # input is optional
    ])

    data = load_dataset(path)

    assert data.mapping.shape == "alpaca"
    assert data.mapping.describe() == "Alpaca: instruction + input → user, output → assistant"
    assert turns(data) == [
        [user("Translate to French.\n\ncat"), assistant("chat")],
        [user("Name a colour."), assistant("Blue.")],
        [user("Name a fruit."), assistant("Apple.")],
    ]


def test_prompt_completion_shape(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Capital of France?", "completion": "Paris."}])

    data = load_dataset(path)

    assert data.mapping.shape == "prompt_completion"
    assert data.mapping.fields == {"prompt": "prompt", "completion": "completion"}
    assert turns(data) == [[user("Capital of France?"), assistant("Paris.")]]


def test_text_shape(tmp_path):
    path = write_jsonl(tmp_path / "text.jsonl", [{"text": "Once upon a time."}, {"text": "The end."}])

    data = load_dataset(path)

    assert data.mapping.shape == "text"
    assert [(r.line, r.text, r.messages) for r in data.records] == [(1, "Once upon a time.", None),
                                                                    (2, "The end.", None)]


def test_aliases_are_recognised_case_insensitively():
    rows = [(1, {"Question": "Why?", "Answer": "Because."})]
    assert detect_mapping(rows) == FieldMapping("prompt_completion", {"prompt": "Question", "completion": "Answer"})
    rows = [(1, {"dialog": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})]
    assert detect_mapping(rows).fields["messages"] == "dialog"
    assert detect_mapping([(1, {"instruction": "x", "response": "y"})]).fields["output"] == "response"


def test_json_array_gives_the_line_where_each_record_starts(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(
        "[\n"
        '  {"prompt": "a", "completion": "b"},\n'  # line 2
        "\n"
        "  {\n"  # line 4: a record spread over lines starts here
        '    "prompt": "c\\nstill c",\n'
        '    "completion": "d"\n'
        "  },\n"
        '  {"prompt": "e", "completion": "f"}, {"prompt": "g", "completion": "h"}\n'  # two records on line 8
        "]\n",
        encoding="utf-8",
    )

    fmt, rows, problems = read_rows(path)
    data = load_dataset(path)

    assert fmt == "json" and problems == []
    assert [line for line, _ in rows] == [2, 4, 8, 8]
    assert data.mapping.shape == "prompt_completion"
    assert turns(data)[1] == [user("c\nstill c"), assistant("d")]


def test_json_object_with_one_list_says_which_key_was_used(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text('{"version": 2,\n "data": [\n  {"text": "one"},\n  {"text": "two"}\n ]\n}\n', encoding="utf-8")

    data = load_dataset(path)

    assert [(r.line, r.text) for r in data.records] == [(3, "one"), (4, "two")]
    assert data.notes == ['The records were read from the "data" list of the top-level JSON object.']


def test_broken_json_document_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n {"text": "a"},\n {"text": "b"\n]\n', encoding="utf-8")

    with pytest.raises(InvalidRequest, match="line 4") as err:
        load_dataset(path)
    assert "JSON Lines" in err.value.hint


def test_csv_with_header_bom_and_multi_line_value(tmp_path):
    path = tmp_path / "alpaca.csv"
    path.write_bytes(
        "\ufeffinstruction,input,output\n"
        '"Write a haiku\nabout rain",,"Drops on the window"\n'  # lines 2-3: one record
        "Add,1 and 2,3\n"  # line 4
        .encode()
    )

    fmt, rows, _ = read_rows(path)
    data = load_dataset(path)

    assert fmt == "csv"
    assert [line for line, _ in rows] == [2, 4]
    assert data.mapping.shape == "alpaca"
    assert data.mapping.fields["instruction"] == "instruction"  # the BOM is not part of the first column name
    assert turns(data) == [[user("Write a haiku\nabout rain"), assistant("Drops on the window")],
                           [user("Add\n\n1 and 2"), assistant("3")]]


def test_user_changed_mapping_reads_columns_detection_does_not_know(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("frage,antwort\nWie heißt du?,Ich bin ein Modell.\n", encoding="utf-8")

    with pytest.raises(InvalidRequest) as err:
        load_dataset(path)
    assert '"frage"' in err.value.message and "header row" in err.value.hint

    mapping = FieldMapping("prompt_completion", {"prompt": "frage", "completion": "antwort"}, {},
                           system_prompt="Antworte auf Deutsch.")
    data = load_dataset(path, mapping)

    assert turns(data) == [[system("Antworte auf Deutsch."), user("Wie heißt du?"), assistant("Ich bin ein Modell.")]]
    assert data.mapping.describe() == ("Prompt/completion: frage → user, antwort → assistant; "
                                       "a system prompt is added to every record")


def test_user_changed_mapping_overrides_detection_and_roles(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "Q1", "answer": "A1", "summary": "S1"},
        {"messages": [{"role": "narrator", "content": "Night."}, user("Hi"), assistant("Hello")]},
    ])
    as_text = load_dataset(path, FieldMapping("text", {"text": "summary"}))
    assert [r.text for r in as_text.records] == ["S1"]
    assert [(p.line, p.kind) for p in as_text.problems] == [(2, "missing_field")]

    roles = {"narrator": "system", "user": "user", "assistant": "assistant"}
    as_chat = load_dataset(path, FieldMapping("messages", {"messages": "messages"}, roles))
    assert turns(as_chat) == [[system("Night."), user("Hi"), assistant("Hello")]]


def test_a_mapping_naming_a_column_the_file_lacks_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "a", "completion": "b"}])
    with pytest.raises(InvalidRequest, match='"reply" chosen for completion'):
        load_dataset(path, FieldMapping("prompt_completion", {"prompt": "prompt", "completion": "reply"}))
    with pytest.raises(InvalidRequest, match="system, user or assistant"):
        load_dataset(path, FieldMapping("messages", {}, {"human": "person"}))


# ---------------------------------------------------------------------------------------------------------------
# Every bad record is reported with its line and left out; the good ones around it load


def test_each_kind_of_bad_chat_record_is_reported_with_its_line(tmp_path):
    good = {"messages": [user("Hi"), assistant("Hello")]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        good,                                                                   # 1
        '{"messages": [{"role": "user", "content": "Hi"}',                      # 2 malformed JSON
        "[1, 2, 3]",                                                            # 3 not an object
        {"prompt": "no messages here"},                                         # 4 missing field
        {"messages": [user("Hi"), {"role": "wizard", "content": "Poof"}]},      # 5 unknown role
        "",                                                                     # 6 blank line: not a record
        {"messages": [user("Hi"), assistant("   ")]},                           # 7 empty reply
        {"messages": [user("Hi"), user("Anyone?")]},                            # 8 no assistant turn
        {"messages": [user("Hi"), {"role": "assistant"}]},                      # 9 turn without content
        good,                                                                   # 10
    ])

    data = load_dataset(path)

    assert [(p.line, p.kind, p.dropped) for p in data.problems] == [
        (2, "malformed_json", True),
        (3, "not_an_object", True),
        (4, "missing_field", True),
        (5, "unknown_role", True),
        (7, "empty_reply", True),
        (8, "no_reply", True),
        (9, "missing_field", True),
    ]
    assert [r.line for r in data.records] == [1, 10]
    assert data.total == 9
    assert data.summary() == "9 records: 2 usable, 7 with problems (7 left out)"
    messages = {p.line: p.message for p in data.problems}
    assert messages[2].startswith("Line 2: the JSON is malformed (") and "column" in messages[2]
    assert messages[3] == ("Line 3: expected a JSON object {...} but found a list; "
                           "each line must hold one record as an object.")
    assert messages[4].startswith('Line 4: the field "messages" is missing')
    assert messages[5].startswith('Line 5: turn 2 has the role "wizard"') and "map it to" in messages[5]
    assert messages[7].startswith("Line 7: turn 2 (assistant) is an empty reply")
    assert messages[8].startswith("Line 8: the conversation has no assistant reply")


def test_bad_pair_and_text_records_are_reported_with_their_lines(tmp_path):
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Say hi", "output": "Hi"},      # 1
        {"instruction": "Say hi"},                      # 2 missing output
        {"instruction": "Say hi", "output": ""},        # 3 empty reply
        {"instruction": "", "output": "Hi"},            # 4 empty instruction
        {"instruction": "Say hi", "output": "Hi"},      # 5
    ])
    data = load_dataset(alpaca)
    assert [(p.line, p.kind) for p in data.problems] == [(2, "missing_field"), (3, "empty_reply"),
                                                         (4, "empty_prompt")]
    assert [r.line for r in data.records] == [1, 5]

    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "a"}, {"text": ""}, {"text": "b"}, {"text": " \n "}])
    data = load_dataset(text)
    assert [(p.line, p.kind, p.dropped) for p in data.problems] == [(2, "empty_text", True), (4, "empty_text", True)]
    assert [r.text for r in data.records] == ["a", "b"]


def test_bad_csv_rows_are_reported_with_their_physical_lines(tmp_path):
    path = tmp_path / "pc.csv"
    path.write_text(
        "prompt,completion\n"
        '"two\nlines",ok\n'          # 2-3
        "too,many,values\n"          # 4
        "no reply,\n"                # 5
        "\n"                         # 6 blank
        "last,one\n",                # 7
        encoding="utf-8",
    )

    data = load_dataset(path)

    assert [(p.line, p.kind) for p in data.problems] == [(4, "extra_values"), (5, "empty_reply")]
    assert [r.line for r in data.records] == [2, 7]


def test_a_conversation_in_a_json_array_reports_its_start_line(tmp_path):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]},
        "not a record",
    ], indent=2), encoding="utf-8")

    data = load_dataset(path)
    lines = path.read_text().split("\n")
    starts = [i + 1 for i, ln in enumerate(lines) if ln in ("  {", '  "not a record"')]  # indent=2: top-level items

    assert data.mapping.shape == "sharegpt"
    assert [(p.line, p.kind) for p in data.problems] == [(starts[1], "empty_reply"), (starts[2], "not_an_object")]
    assert [r.line for r in data.records] == [starts[0]]


# ---------------------------------------------------------------------------------------------------------------
# Files that cannot be loaded at all say why


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.jsonl", "", "the file is empty"),
    ("blank.jsonl", "\n  \n", "the file is empty"),
    ("empty.json", "[]", "the JSON list is empty"),
    ("header-only.csv", "prompt,completion\n", "the CSV file has a header row but no records below it"),
])
def test_an_empty_file_gives_a_clear_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidRequest) as err:
        load_dataset(path)
    assert err.value.message == f"{name} holds no records ({reason})."
    assert "JSONL" in err.value.hint


def test_a_file_with_no_known_shape_lists_the_fields_it_saw_and_the_known_shapes(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1, "bar": 2}, {"foo": 3, "bar": 4}])
    with pytest.raises(InvalidRequest) as err:
        load_dataset(path)
    assert '"foo"' in err.value.message and '"bar"' in err.value.message
    for shape in ("ShareGPT", "Alpaca", "prompt/completion", "plain text", "chat messages"):
        assert shape in err.value.message


def test_a_csv_without_a_header_row_is_refused(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("Write a short poem about the sea and the wind blowing over it at night,The sea sleeps.\n",
                    encoding="utf-8")
    with pytest.raises(InvalidRequest, match="needs a header row.*line 1"):
        load_dataset(path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InvalidRequest, match="line 2") as err:
        load_dataset(path)
    assert "UTF-8" in err.value.hint


def test_a_file_where_no_line_can_be_read_shows_the_first_problems(tmp_path):
    path = write_jsonl(tmp_path / "junk.jsonl", ["not json", "[1]"])
    with pytest.raises(InvalidRequest, match="None of the 2 records") as err:
        load_dataset(path)
    assert "Line 1:" in err.value.hint and "Line 2:" in err.value.hint


def test_content_sniffing_when_the_extension_says_nothing(tmp_path):
    jsonl = write_jsonl(tmp_path / "data.txt", [{"text": "a"}, {"text": "b"}])
    assert read_rows(jsonl)[0] == "jsonl"
    array = tmp_path / "data.dat"
    array.write_text('[{"text": "a"}]', encoding="utf-8")
    assert read_rows(array)[0] == "json"
    lines_named_json = write_jsonl(tmp_path / "really-lines.json", [{"text": "a"}, {"text": "b"}])
    assert load_dataset(lines_named_json).file_format == "jsonl"


# ---------------------------------------------------------------------------------------------------------------
# Length limit and split


def _dataset(tmp_path: Path, n: int):
    return load_dataset(write_jsonl(tmp_path / "n.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"}
                                                            for i in range(n)]))


def test_length_limit_drop_reports_and_leaves_out_each_long_record(tmp_path):
    data = _dataset(tmp_path, 4)

    limited = apply_length_limit(data, [10, 300, 20, 5000], max_tokens=256, policy="drop")

    assert [r.line for r in limited.records] == [1, 3]
    assert [(p.line, p.kind, p.dropped) for p in limited.problems] == [(2, "too_long", True), (4, "too_long", True)]
    assert limited.problems[1].message.startswith("Line 4: the record is 5,000 tokens long, over the maximum length "
                                                  "of 256; it is left out")
    assert limited.summary() == "4 records: 2 usable, 2 with problems (2 left out)"
    assert len(data.records) == 4  # the original is untouched


def test_length_limit_truncate_keeps_the_records_and_says_they_will_be_cut(tmp_path):
    data = _dataset(tmp_path, 3)

    limited = apply_length_limit(data, [300, 10, 256], max_tokens=256, policy="truncate")

    assert [r.line for r in limited.records] == [1, 2, 3]
    assert limited.problems == [DatasetProblem(
        1, "too_long", "Line 1: the record is 300 tokens long, over the maximum length of 256; it will be cut to "
        "256 tokens and its end will not be learned.", False)]
    assert limited.summary() == "3 records: 3 usable, 1 with problems (0 left out)"
    with pytest.raises(InvalidRequest, match="truncate"):
        apply_length_limit(data, [1, 1, 1], 256, "shorten")


def test_split_is_deterministic_and_disjoint():
    records = [Record(i, ({"role": "user", "content": str(i)}, {"role": "assistant", "content": "x"}), None)
               for i in range(1, 101)]

    train, val = split(records, 0.2, seed=7)

    assert len(val) == 20 and len(train) == 80
    assert {r.line for r in train}.isdisjoint({r.line for r in val})
    assert {r.line for r in train} | {r.line for r in val} == set(range(1, 101))
    assert split(records, 0.2, seed=7) == (train, val)
    assert split(records, 0.2, seed=8)[1] != val


def test_split_small_datasets():
    records = [Record(i, None, f"t{i}") for i in range(1, 11)]
    assert len(split(records, 0.01)[1]) == 1  # at least one validation record from 10 on
    train, val = split(records[:9], 0.5)
    assert (len(train), val) == (9, [])  # too few for a validation set
    with pytest.raises(InvalidRequest):
        split(records, 1.0)
