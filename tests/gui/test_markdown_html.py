"""Chat Markdown as the user sees it: rendered HTML read back through a real QTextDocument (offscreen Qt)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QTextDocument, QTextFragment, QTextTable

from desktop_llm.gui.markdown_html import Rendered, render_markdown, stable_prefix_length

PYTHON_CODE = (
    "def total(items):\n"
    "\n"
    "    result = 0  # running sum\n"
    "    for item in items:\n"
    "\t\tresult += item\n"
    "\n"
    "\n"
    "        # deeply indented comment\n"
    '    return "done"'
)


@pytest.fixture()
def as_document(qapp):
    def load(rendered: Rendered) -> QTextDocument:
        doc = QTextDocument()
        doc.setHtml(rendered.html)
        return doc

    return load


def fragments(doc: QTextDocument) -> list[QTextFragment]:
    """Every run of same-format text, in document order (table cells included)."""
    found = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            found.append(it.fragment())
            it += 1
        block = block.next()
    return found


def anchors(doc: QTextDocument) -> list[str]:
    return [f.charFormat().anchorHref() for f in fragments(doc) if f.charFormat().isAnchor()]


def colours_of(doc: QTextDocument, text: str) -> set[str]:
    """Foreground colours used to draw the characters of `text` (non-space ones)."""
    start = doc.toPlainText().index(text)
    end = start + len(text)
    seen = set()
    for frag in fragments(doc):
        if frag.position() < end and frag.position() + frag.length() > start and frag.text().strip():
            seen.add(frag.charFormat().foreground().color().name())
    return seen


def tables(doc: QTextDocument) -> list[QTextTable]:
    return [f for f in doc.rootFrame().childFrames() if isinstance(f, QTextTable)]


def luminance(colour: QColor) -> float:
    return colour.lightnessF()


# -- code blocks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["python", "", "nosuchlang"])
def test_code_keeps_every_space_tab_and_blank_line(as_document, lang):
    rendered = render_markdown(f"Look:\n\n```{lang}\n{PYTHON_CODE}\n```\n\nAfter.")
    assert rendered.code_blocks == [PYTHON_CODE]
    assert PYTHON_CODE in as_document(rendered).toPlainText()


def test_code_starting_or_ending_with_blank_lines_survives(as_document):
    code = "\n\n  x = 1\n\n"
    rendered = render_markdown(f"```python\n{code}\n```")
    assert rendered.code_blocks == [code]
    assert code in as_document(rendered).toPlainText()


def test_indented_code_block_gets_a_copy_link_too(as_document):
    rendered = render_markdown("Run this:\n\n    make all\n      make install\n")
    assert rendered.code_blocks == ["make all\n  make install"]
    doc = as_document(rendered)
    assert "make all\n  make install" in doc.toPlainText()
    assert anchors(doc) == ["copy-code:0"]


def test_code_block_header_names_the_language_and_offers_copy(as_document):
    doc = as_document(render_markdown("```rust\nfn main() {}\n```\n\n```\nplain\n```"))
    text = doc.toPlainText()
    assert text.index("rust") < text.index("Copy") < text.index("fn main() {}")
    assert text.index("code") < text.rindex("Copy") < text.index("plain")


def test_copy_links_count_on_from_block_id_start(as_document):
    text = "```python\na = 1\n```\n\nbetween\n\n~~~\nb = 2\n~~~\n"
    rendered = render_markdown(text, block_id_start=7)
    assert rendered.code_blocks == ["a = 1", "b = 2"]
    assert anchors(as_document(rendered)) == ["copy-code:7", "copy-code:8"]
    assert anchors(as_document(render_markdown(text))) == ["copy-code:0", "copy-code:1"]


def test_python_is_highlighted_and_unknown_language_is_not(as_document):
    highlighted = as_document(render_markdown(f"```python\n{PYTHON_CODE}\n```"))
    assert len(colours_of(highlighted, PYTHON_CODE)) >= 2
    # Fence names are matched case-insensitively, and common aliases work.
    assert len(colours_of(as_document(render_markdown(f"```Py\n{PYTHON_CODE}\n```")), PYTHON_CODE)) >= 2

    for fence in ("```nosuchlang", "```"):
        plain = as_document(render_markdown(f"{fence}\n{PYTHON_CODE}\n```"))
        assert len(colours_of(plain, PYTHON_CODE)) == 1


@pytest.mark.parametrize("dark", [False, True])
def test_code_block_colours_suit_the_theme(as_document, dark):
    doc = as_document(render_markdown("```python\nx = 1  # one\n```\n\n[site](https://example.org)", dark=dark))
    (table,) = tables(doc)
    cell_brush = table.cellAt(1, 0).format().background()
    brush = cell_brush if cell_brush.style() != Qt.BrushStyle.NoBrush else table.format().background()
    assert brush.style() != Qt.BrushStyle.NoBrush
    background = brush.color()
    code_colours = [QColor(c) for c in colours_of(doc, "x = 1  # one")]
    link = next(f for f in fragments(doc) if f.charFormat().anchorHref() == "https://example.org")
    link_colour = link.charFormat().foreground().color()
    if dark:
        assert luminance(background) < 0.25
        assert all(luminance(c) > 0.45 for c in code_colours)
        assert luminance(link_colour) > 0.5
    else:
        assert luminance(background) > 0.85
        assert all(luminance(c) < 0.6 for c in code_colours)
        assert luminance(link_colour) < 0.6


# -- untrusted text --------------------------------------------------------------------------------

def test_raw_html_shows_as_text(as_document):
    doc = as_document(render_markdown('Hi <script>alert("x")</script> and <b>bold?</b>\n\n<div>block</div>'))
    text = doc.toPlainText()
    assert '<script>alert("x")</script>' in text
    assert "<b>bold?</b>" in text
    assert "<div>block</div>" in text
    assert not any(f.charFormat().fontWeight() > 500 for f in fragments(doc))


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,hi", "/relative/path", "vbscript:x"]
)
def test_unsafe_or_relative_links_are_plain_text(as_document, href):
    doc = as_document(render_markdown(f"Click [here]({href}) now"))
    assert anchors(doc) == []
    assert "here" in doc.toPlainText()


def test_web_and_mail_links_are_links(as_document):
    doc = as_document(render_markdown("[a](https://a.example/x?y=1&z=2) [b](http://b.example) "
                                      "[c](mailto:me@example.org) <https://auto.example>"))
    assert anchors(doc) == ["https://a.example/x?y=1&z=2", "http://b.example", "mailto:me@example.org",
                            "https://auto.example"]


@pytest.mark.parametrize("src", ["file:///etc/passwd", "/etc/passwd", "secret.png", "https://example.org/cat.png"])
def test_images_never_load(as_document, src):
    rendered = render_markdown(f"Look: ![a cat]({src})")
    assert "<img" not in rendered.html.lower()
    doc = as_document(rendered)
    assert not any(f.charFormat().isImageFormat() for f in fragments(doc))
    if src.startswith("https://"):
        assert anchors(doc) == [src]
        assert "a cat" in doc.toPlainText()
    else:
        assert anchors(doc) == []


# -- prose -----------------------------------------------------------------------------------------

def test_single_newline_is_a_line_break(as_document):
    text = as_document(render_markdown("first line\nsecond line")).toPlainText()
    assert "first line second line" not in text
    assert text.replace("\u2028", "\n").splitlines() == ["first line", "second line"]


def test_inline_styles(as_document):
    doc = as_document(render_markdown("# Title\n\nSome *it* **bold** ~~gone~~ `x   = 1` text"))
    assert doc.begin().blockFormat().headingLevel() == 1
    by_text = {f.text(): f.charFormat() for f in fragments(doc)}
    assert by_text["it"].fontItalic()
    assert by_text["bold"].fontWeight() > 500
    assert by_text["gone"].fontStrikeOut()
    assert "`" not in doc.toPlainText() and "x   = 1" in doc.toPlainText()  # spaces kept in inline code
    code = next(fmt for text, fmt in by_text.items() if text.replace("\xa0", " ") == "x   = 1")
    assert "monospace" in (code.fontFamilies() or []) or code.fontFixedPitch()
    assert code.background().style() != Qt.BrushStyle.NoBrush


def list_markers(doc: QTextDocument) -> list[str]:
    markers = []
    block = doc.begin()
    while block.isValid():
        if block.textList() is not None:
            markers.append(block.textList().itemText(block) + block.text())
        block = block.next()
    return markers


def test_nested_and_numbered_lists(as_document):
    doc = as_document(render_markdown("3. three\n4. four\n   - inner\n   - inner too\n5. five"))
    markers = list_markers(doc)
    assert markers[:2] == ["3.three", "4.four"]
    assert markers[-1] == "5.five"
    assert any(m.endswith("inner too") for m in markers)


def test_list_split_while_streaming_keeps_its_numbers(as_document):
    text = "1. first\n\n2. second\n"
    cut = stable_prefix_length(text)
    assert cut == len("1. first\n\n")
    assert list_markers(as_document(render_markdown(text[:cut]))) == ["1.first"]
    assert list_markers(as_document(render_markdown(text[cut:]))) == ["2.second"]


def test_table_becomes_a_real_table(as_document):
    doc = as_document(render_markdown("| Name | Size |\n|:--|--:|\n| a.gguf | 98 MB |\n| b.gguf | 1 GB |"))
    (table,) = tables(doc)
    assert (table.rows(), table.columns()) == (3, 2)
    cells = [[table.cellAt(r, c).firstCursorPosition().block().text() for c in range(2)] for r in range(3)]
    assert cells == [["Name", "Size"], ["a.gguf", "98 MB"], ["b.gguf", "1 GB"]]
    assert table.format().border() > 0


def test_blockquote_and_rule_keep_their_text(as_document):
    text = as_document(render_markdown("> quoted *words*\n\n---\n\nafter")).toPlainText()
    assert "quoted words" in text and text.rstrip().endswith("after")


# -- streaming -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no blank line yet\nstill going", ""),
        ("para one\n\npara two", "para one\n\n"),
        ("para one\n\n", ""),  # the next line might still be an indented continuation
        ("a\n\nb\n\n\n\nc", "a\n\nb\n\n\n\n"),
        # A blank line inside an open fence is code, not a block boundary.
        ("Intro\n\n```python\nx = 1\n\ny = 2\n\nz", "Intro\n\n"),
        # A closed fence (its closing line complete) is stable at once.
        ("```python\nx = 1\n\ny = 2\n```\nmore", "```python\nx = 1\n\ny = 2\n```\n"),
        ("```python\nx = 1\n```", ""),
        # Tildes: backticks do not close them, a longer closing fence does.
        ("~~~\n```\n\nin code\n~~~~\n\nnext", "~~~\n```\n\nin code\n~~~~\n\n"),
        ("````\n```\n\nstill code", ""),
        ("~~~~\n~~~\n\nstill code", ""),
        # "```x```" on a line is inline code, not a fence.
        ("```x```\n\nnext", "```x```\n\n"),
        # Windows line ends.
        ("a\r\n\r\nb", "a\r\n\r\n"),
        ("```\r\nx\r\n\r\ny\r\n```\r\nz", "```\r\nx\r\n\r\ny\r\n```\r\n"),
        # An indented line after a blank line still belongs to the list item (or code block) before it.
        ("1. a\n\n   more of a\n\n2. b", "1. a\n\n   more of a\n\n"),
        ("    code\n\n    more code\n\nprose", "    code\n\n    more code\n\n"),
        # A fence inside a list item: its blank lines are code too.
        ("- item\n  ```\n  x\n\n  y\n", ""),
    ],
)
def test_stable_prefix(text, expected):
    assert stable_prefix_length(text) == len(expected)
    assert text.startswith(expected)


def test_stable_prefix_renders_like_the_whole(as_document):
    reply = "Here:\n\n```python\ndef f():\n\n    return 1\n```\nThen a list:\n\n- one\n- two\n\nDone."
    cut = stable_prefix_length(reply)
    assert 0 < cut < len(reply)
    head = render_markdown(reply[:cut])
    tail = render_markdown(reply[cut:], block_id_start=len(head.code_blocks))
    assert head.code_blocks + tail.code_blocks == render_markdown(reply).code_blocks
    whole_text = as_document(render_markdown(reply)).toPlainText().split()
    assert as_document(head).toPlainText().split() + as_document(tail).toPlainText().split() == whole_text
