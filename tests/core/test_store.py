"""The chat history store: real SQLite files, real processes killed mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from desktop_llm.core.store import MIGRATIONS, SCHEMA_VERSION, ChatStore, StoreError


@pytest.fixture()
def store(tmp_path):
    s = ChatStore(tmp_path / "chats.db")
    yield s
    s.close()


def test_new_database_is_fully_migrated_and_in_wal_mode(tmp_path):
    s = ChatStore(tmp_path / "new.db")
    assert s.schema_version() == SCHEMA_VERSION
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.integrity_ok()


@pytest.mark.parametrize("start", range(SCHEMA_VERSION))
def test_migrates_from_every_earlier_version_keeping_data(tmp_path, start):
    path = tmp_path / f"v{start}.db"
    db = sqlite3.connect(path)
    for number in range(start):
        db.executescript(MIGRATIONS[number]())
    db.execute(f"PRAGMA user_version = {start}")
    if start >= 1:
        db.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c1', 'Old', 1, 1)")
        db.execute("INSERT INTO messages (id, conversation_id, role, content, created_at) "
                   "VALUES ('m1', 'c1', 'user', 'kept across upgrades', 1)")
    db.commit()
    db.close()
    s = ChatStore(path)
    assert s.schema_version() == SCHEMA_VERSION
    if start >= 1:
        assert s.get_message("m1").content == "kept across upgrades"
        assert s.search("upgrades")[0].message_id == "m1"


def test_newer_or_damaged_database_is_refused_with_advice(tmp_path):
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer version"):
        ChatStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="Move the file aside"):
        ChatStore(junk)
    assert junk.stat().st_size == 8192  # nothing overwritten


def test_regenerate_and_edit_branch_instead_of_deleting(store):
    conv = store.create_conversation("Colours")
    q1 = store.add_message(conv.id, "user", "Name a colour.", None)
    a1 = store.add_message(conv.id, "assistant", "Red.", q1.id)
    a2 = store.add_message(conv.id, "assistant", "Blue.", q1.id)  # regenerate
    assert [m.content for m in store.siblings(a2.id)] == ["Red.", "Blue."]
    assert [m.content for m in store.current_path(conv.id)] == ["Name a colour.", "Blue."]
    q2 = store.add_message(conv.id, "user", "Another?", a2.id)
    store.add_message(conv.id, "assistant", "Green.", q2.id)

    # Edit the first question: a new branch from the root; the old one stays.
    q1b = store.add_message(conv.id, "user", "Name a fruit.", None)
    store.add_message(conv.id, "assistant", "Apple.", q1b.id)
    assert [m.content for m in store.current_path(conv.id)] == ["Name a fruit.", "Apple."]
    assert [m.content for m in store.siblings(q1.id)] == ["Name a colour.", "Name a fruit."]

    # Back to the first branch: lands on its newest reply chain.
    path = store.switch_to(q1.id)
    assert [m.content for m in path] == ["Name a colour.", "Blue.", "Another?", "Green."]
    assert [m.content for m in store.switch_to(a1.id)] == ["Name a colour.", "Red."]
    assert store.get_conversation(conv.id).current_leaf_id == a1.id

    # What ‹ n/m › shows: only messages with other versions, numbered oldest first.
    versions = store.version_info(conv.id)
    assert versions == {a1.id: (1, 2), a2.id: (2, 2), q1.id: (1, 2), q1b.id: (2, 2)}


def test_caller_named_ids_are_kept(store):
    conv = store.create_conversation("Named", conversation_id="c-1")
    msg = store.add_message("c-1", "user", "Hi", None, message_id="m-1")
    assert conv.id == "c-1" and msg.id == "m-1" and store.get_message("m-1").content == "Hi"


def test_fork_copies_the_path_only(store):
    conv = store.create_conversation("Trip", system_prompt="Be brief.", params={"temperature": 0.3})
    q = store.add_message(conv.id, "user", "Where to?", None)
    a = store.add_message(conv.id, "assistant", "Lisbon.", q.id)
    store.add_message(conv.id, "user", "Why?", a.id)
    forked = store.fork(a.id)
    assert forked.id != conv.id and forked.system_prompt == "Be brief." and forked.params == {"temperature": 0.3}
    assert [m.content for m in store.current_path(forked.id)] == ["Where to?", "Lisbon."]
    assert len(store.current_path(conv.id)) == 3


def test_list_sorting_pin_rename_delete_undo(store):
    a = store.create_conversation("A")
    b = store.create_conversation("B")
    store.add_message(a.id, "user", "latest activity", None)
    assert [c.title for c in store.list_conversations()] == ["A", "B"]
    store.update_conversation(b.id, pinned=True, title="B renamed")
    assert [c.title for c in store.list_conversations()] == ["B renamed", "A"]
    store.delete_conversation(a.id)
    assert [c.title for c in store.list_conversations()] == ["B renamed"]
    assert store.search("latest") == []
    store.restore_conversation(a.id)
    assert {c.title for c in store.list_conversations()} == {"B renamed", "A"}
    store.delete_conversation(a.id)
    assert store.purge_deleted() == 1
    with pytest.raises(Exception, match="No conversation"):
        store.get_conversation(a.id)


def test_search_finds_messages_across_conversations(store):
    c1 = store.create_conversation("Cooking")
    store.add_message(c1.id, "user", "How long do I boil an egg?", None)
    c2 = store.create_conversation("Travel")
    m = store.add_message(c2.id, "assistant", "The Café de Flore is in Paris.", None)
    hits = store.search("cafe paris")  # accents folded, words in any order
    assert [(h.conversation_title, h.message_id) for h in hits] == [("Travel", m.id)]
    assert "[Paris]" in hits[0].snippet
    assert store.search("boi")[0].conversation_title == "Cooking"  # prefix of the last word
    # Quotes, brackets and operators are text, never query syntax: no error, no OR.
    assert store.search('egg" OR "paris') == []
    assert store.search("(boil")[0].conversation_title == "Cooking"
    store.update_message(m.id, content="Now it says Berlin.")
    assert store.search("paris") == [] and store.search("berlin")[0].message_id == m.id


WRITER = r"""
import sys, time
from desktop_llm.core.store import ChatStore
s = ChatStore(sys.argv[1])
c = s.create_conversation("Streaming")
q = s.add_message(c.id, "user", "Tell me a story", None)
a = s.add_message(c.id, "assistant", "", q.id, status="streaming")
print(a.id, flush=True)
text = ""
while True:
    text += "word "
    s.update_message(a.id, content=text)
    print(len(text), flush=True)
    time.sleep(0.002)
"""


def test_killed_while_a_reply_streams_leaves_a_sound_database(tmp_path):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    message_id = proc.stdout.readline().strip()
    committed = 0
    deadline = time.monotonic() + 30
    while committed < 2000 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = ChatStore(path)
    assert s.integrity_ok()
    content = s.get_message(message_id).content
    # Everything reported as committed is there (the writer may have committed one more after reporting).
    assert len(content) >= committed and content.startswith("word word")
    assert s.get_message(message_id).status == "streaming"  # the app can tell the reply was cut off


def test_export_then_import_gives_the_same_conversation(store):
    conv = store.create_conversation("Poems", system_prompt="Rhyme.", model_id="bundled:x", params={"top_k": 5})
    q = store.add_message(conv.id, "user", "A poem about «snow» ❄", None)
    store.add_message(conv.id, "assistant", "White and bright.", q.id, meta={"tokens_per_second": 50.0})
    a2 = store.add_message(conv.id, "assistant", "Cold and quiet.", q.id, status="stopped")
    exported = store.export_json(conv.id)
    copy = store.import_json(exported)
    assert copy.id != conv.id
    assert (copy.title, copy.system_prompt, copy.model_id) == ("Poems", "Rhyme.", "bundled:x")
    assert copy.params == {"top_k": 5}
    shown = store.current_path(copy.id)
    assert [(m.role, m.content, m.status) for m in shown] == [(m.role, m.content, m.status)
                                                             for m in store.current_path(conv.id)]
    assert shown[-1].content == "Cold and quiet." and a2.id not in {m.id for m in shown}
    assert [m.content for m in store.siblings(shown[-1].id)] == ["White and bright.", "Cold and quiet."]
    assert store.siblings(shown[-1].id)[0].meta == {"tokens_per_second": 50.0}
    md = store.export_markdown(conv.id)
    assert md.startswith("# Poems") and "Rhyme." in md and "### You" in md and "Cold and quiet." in md
    assert "White and bright." not in md  # Markdown holds the branch shown


@pytest.mark.parametrize(("text", "words"), [
    ("not json", "not valid JSON"),
    ('{"format": "other"}', "not a desktop_llm conversation"),
    ('{"format": "desktop_llm.conversation", "version": 99}', "newer than this app"),
    ('{"format": "desktop_llm.conversation", "version": 1, "conversation": {}, "messages": [{"id": "a"}]}',
     "Message 1"),
    ('{"format": "desktop_llm.conversation", "version": 1, "conversation": {}, "messages": '
     '[{"id": "a", "role": "user", "content": "x", "parent_id": "ghost"}]}', "parents that are not in it"),
])
def test_bad_imports_say_what_is_wrong_and_change_nothing(store, text, words):
    from desktop_llm.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=words):
        store.import_json(text)
    assert store.list_conversations() == []
