"""Markdown to the HTML subset Qt rich text understands, for chat messages.

Qt-free on purpose (no PySide6 import): the output is a fragment for a QTextDocument, so it
uses only what Qt's HTML parser supports (tag attributes and inline styles, no CSS classes).
Message text comes from a model and is untrusted: raw HTML is shown as text, only http, https
and mailto links become anchors, and images never become ``<img>`` (Qt would load local files).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.style import StyleMeta
from pygments.styles import get_style_by_name
from pygments.token import Token as PygToken
from pygments.token import _TokenType
from pygments.util import ClassNotFound

__all__ = ["Rendered", "render_markdown", "stable_prefix_length", "warm_up"]


@dataclass
class Rendered:
    html: str  # a fragment to insert into a QTextDocument (no <html>/<body>)
    code_blocks: list[str] = field(default_factory=list)  # raw code of each block, in order, for "Copy"


@dataclass(frozen=True)
class _Theme:
    pygments_style: str
    link: str
    muted: str  # code block language label, blockquote text
    inline_code_bg: str
    code_header_bg: str
    code_fg: str  # code text where the Pygments style names no colour
    table_border: str
    table_header_bg: str
    quote_bar: str


_LIGHT = _Theme(
    pygments_style="default",
    link="#0969da",
    muted="#59636e",
    inline_code_bg="#eceef1",
    code_header_bg="#eaecef",
    code_fg="#1f2328",
    table_border="#c8ced6",
    table_header_bg="#f3f5f7",
    quote_bar="#d0d7de",
)
_DARK = _Theme(
    pygments_style="github-dark",
    link="#58a6ff",
    muted="#9198a1",
    inline_code_bg="#3a3f47",
    code_header_bg="#1f2630",
    code_fg="#e6edf3",
    table_border="#555c66",
    table_header_bg="#2d333b",
    quote_bar="#4a525c",
)

_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_SPACE_BEFORE_SPACE = re.compile(r" (?= )")

# html disabled: model output must never inject markup. breaks: a single newline in a chat message is a
# line break, as in chat apps.
_md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def _safe_href(url: str) -> bool:
    return url.strip().lower().startswith(_SAFE_SCHEMES)


def _attr(value: str) -> str:
    return escape(value, quote=True)


# -- syntax highlighting ---------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _lexer(name: str) -> Lexer | None:
    """The Pygments lexer for a fence's language name, or None: no guessing for unknown names."""
    try:
        # stripnl off: the code shown must be exactly the code copied.
        return get_lexer_by_name(name, stripnl=False, stripall=False, ensurenl=True)
    except ClassNotFound:
        return None


class _Highlighter:
    """Pygments tokens to ``<span style>`` runs, with the style lookups cached per token type."""

    def __init__(self, style_name: str, fallback_fg: str) -> None:
        self.style: StyleMeta = get_style_by_name(style_name)
        self.background: str = self.style.background_color
        base = self.style.style_for_token(PygToken)
        self.foreground = f"#{base['color']}" if base["color"] else fallback_fg
        self._css: dict[_TokenType, str] = {}

    def css(self, ttype: _TokenType) -> str:
        css = self._css.get(ttype)
        if css is None:
            st = self.style.style_for_token(ttype)
            parts = []
            if st["color"] and f"#{st['color']}".lower() != self.foreground.lower():
                parts.append(f"color:#{st['color']}")
            if st["bold"]:
                parts.append("font-weight:bold")
            if st["italic"]:
                parts.append("font-style:italic")
            if st["underline"]:
                parts.append("text-decoration:underline")
            css = self._css[ttype] = ";".join(parts)
        return css

    def highlight(self, code: str, lexer: Lexer) -> str:
        tokens = list(lexer.get_tokens(code))
        # ensurenl added a newline the code does not end with: drop it, so the block shows no extra line.
        if tokens and not code.endswith("\n") and tokens[-1][1].endswith("\n"):
            ttype, value = tokens[-1]
            tokens[-1] = (ttype, value[:-1])
        out: list[str] = []
        run_css, run_text = "", []
        for ttype, value in tokens:
            # Whitespace joins the current run whatever its token type: fewer spans for Qt to parse.
            css = run_css if value.isspace() else self.css(ttype)
            if css != run_css and run_text:
                out.append(_span(run_css, "".join(run_text)))
                run_text = []
            run_css = css
            run_text.append(value)
        if run_text:
            out.append(_span(run_css, "".join(run_text)))
        return "".join(out)


def _span(css: str, text: str) -> str:
    text = escape(text, quote=False)
    return f'<span style="{css}">{text}</span>' if css else text


@lru_cache(maxsize=4)
def _highlighter(style_name: str, fallback_fg: str) -> _Highlighter:
    return _Highlighter(style_name, fallback_fg)


@lru_cache(maxsize=128)
def _highlighted(style_name: str, fallback_fg: str, lang: str, code: str) -> str:
    # Lexing is nearly all of the render time (about 14 ms for 300 lines of Python here); a message
    # rendered again (finished stream, theme switch, reopened chat) reuses it.
    lexer = _lexer(lang)
    if lexer is None or not code:
        return escape(code, quote=False)
    return _highlighter(style_name, fallback_fg).highlight(code, lexer)


# -- rendering -------------------------------------------------------------------------------------

class _Renderer:
    def __init__(self, theme: _Theme, block_id_start: int) -> None:
        self.theme = theme
        self.next_id = block_id_start
        self.code_blocks: list[str] = []
        self.hl = _highlighter(theme.pygments_style, theme.code_fg)

    def render(self, tokens: Sequence[Token]) -> str:
        t = self.theme
        out: list[str] = []
        lists: list[str] = []  # open lists, outermost first
        for tok in tokens:
            kind = tok.type
            if kind == "inline":
                out.append(self.inline(tok.children or []))
            elif kind == "paragraph_open":
                if not tok.hidden:
                    out.append("<p>")
            elif kind == "paragraph_close":
                if not tok.hidden:
                    out.append("</p>")
            elif kind == "heading_open":
                out.append(f"<{tok.tag}>")
            elif kind == "heading_close":
                out.append(f"</{tok.tag}>")
            elif kind in ("bullet_list_open", "ordered_list_open"):
                attrs = ""
                start = tok.attrs.get("start", 1)
                if kind == "ordered_list_open" and start != 1:
                    # Kept so a list split while streaming ("1. a" then "2. b") still counts on.
                    attrs += f' start="{int(start)}"'
                # Qt gives a list's bottom margin to the text of its last item, even when a nested list
                # follows that text; the next block's own top margin spaces the list instead.
                attrs += ' style="margin-top:0; margin-bottom:0"' if lists else ' style="margin-bottom:0"'
                lists.append(tok.tag)
                out.append(f"<{tok.tag}{attrs}>")
            elif kind in ("bullet_list_close", "ordered_list_close"):
                lists.pop()
                out.append(f"</{tok.tag}>")
            elif kind == "list_item_open":
                out.append("<li>")
            elif kind == "list_item_close":
                out.append("</li>")
            elif kind == "blockquote_open":
                # Qt draws no side bar for <blockquote>: a two-cell table gives the usual quote look.
                out.append(
                    '<table border="0" cellspacing="0" cellpadding="0" style="margin-top:4px; margin-bottom:4px">'
                    f'<tr><td width="3" bgcolor="{t.quote_bar}"></td>'
                    f'<td style="padding-left:10px; color:{t.muted}">'
                )
            elif kind == "blockquote_close":
                out.append("</td></tr></table>")
            elif kind == "hr":
                out.append("<hr />")
            elif kind in ("fence", "code_block"):
                lang = tok.info.strip().split(maxsplit=1)[0] if kind == "fence" and tok.info.strip() else ""
                out.append(self.code_block(tok.content, lang))
            elif kind == "table_open":
                out.append(
                    f'<table border="1" cellspacing="0" cellpadding="5" style="border-collapse:collapse; '
                    f'border-style:solid; border-color:{t.table_border}; margin-top:6px; margin-bottom:6px">'
                )
            elif kind == "table_close":
                out.append("</table>")
            elif kind in ("thead_open", "thead_close", "tbody_open", "tbody_close"):
                out.append(f"<{'/' if kind.endswith('close') else ''}{tok.tag}>")
            elif kind == "tr_open":
                out.append("<tr>")
            elif kind == "tr_close":
                out.append("</tr>")
            elif kind in ("th_open", "td_open"):
                align = _cell_align(tok)
                attrs = f' align="{align}"' if align else ""
                if kind == "th_open":
                    attrs += f' bgcolor="{t.table_header_bg}"'
                out.append(f"<{tok.tag}{attrs}>")
            elif kind in ("th_close", "td_close"):
                out.append(f"</{tok.tag}>")
            # html_block cannot occur (html disabled); unknown token types are dropped.
        return "".join(out)

    def code_block(self, content: str, lang: str) -> str:
        t = self.theme
        code = content[:-1] if content.endswith("\n") else content
        block_id = self.next_id
        self.next_id += 1
        self.code_blocks.append(code)
        body = _highlighted(t.pygments_style, t.code_fg, lang.lower(), code) if lang else escape(code, quote=False)
        if code.startswith(("\n", "\r")):
            body = "\n" + body  # Qt, like browsers, drops a newline right after <pre>
        label = escape(lang or "code", quote=False)
        # Two header cells (label left, Copy right) over one code cell spanning both.
        return (
            f'<table width="100%" border="0" cellspacing="0" cellpadding="6" bgcolor="{self.hl.background}" '
            'style="margin-top:6px; margin-bottom:6px">'
            f'<tr><td bgcolor="{t.code_header_bg}"><span style="color:{t.muted}">{label}</span></td>'
            f'<td bgcolor="{t.code_header_bg}" align="right">'
            f'<a href="copy-code:{block_id}" style="color:{t.link}; text-decoration:none">Copy</a></td></tr>'
            # pre-wrap: long lines wrap instead of widening the table past the view (and its Copy link).
            '<tr><td colspan="2"><pre style="margin-top:0; margin-bottom:0; white-space:pre-wrap; '
            f'color:{self.hl.foreground}">'
            f"{body}</pre></td></tr></table>"
        )

    def inline(self, children: Sequence[Token]) -> str:
        t = self.theme
        out: list[str] = []
        link_stack: list[bool] = []  # per open link: whether it became an <a>
        for tok in children:
            kind = tok.type
            if kind in ("text", "text_special"):
                out.append(escape(tok.content, quote=False))
            elif kind in ("softbreak", "hardbreak"):
                out.append("<br />")
            elif kind == "code_inline":
                # Qt collapses runs of spaces: all but the last space of a run become non-breaking.
                code = _SPACE_BEFORE_SPACE.sub("&nbsp;", escape(tok.content, quote=False))
                out.append(f'<code style="background-color:{t.inline_code_bg}">{code}</code>')
            elif kind in ("em_open", "strong_open", "s_open"):
                out.append(f"<{tok.tag}>")
            elif kind in ("em_close", "strong_close", "s_close"):
                out.append(f"</{tok.tag}>")
            elif kind == "link_open":
                href = str(tok.attrs.get("href", ""))
                ok = _safe_href(href) and not any(link_stack)
                link_stack.append(ok)
                if ok:
                    title = tok.attrs.get("title")
                    title_attr = f' title="{_attr(str(title))}"' if title else ""
                    out.append(f'<a href="{_attr(href)}"{title_attr} style="color:{t.link}">')
            elif kind == "link_close":
                if link_stack and link_stack.pop():
                    out.append("</a>")
            elif kind == "image":
                out.append(self.image(tok, inside_link=any(link_stack)))
        return "".join(out)

    def image(self, tok: Token, *, inside_link: bool) -> str:
        alt = escape(_plain_text(tok.children or []), quote=False)
        src = str(tok.attrs.get("src", ""))
        if src.lower().startswith(("http://", "https://")) and not inside_link:
            return f'<a href="{_attr(src)}" style="color:{self.theme.link}">{alt or "image"}</a>'
        return alt


def _plain_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for tok in children:
        if tok.type in ("text", "text_special", "code_inline"):
            parts.append(tok.content)
        elif tok.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif tok.type == "image":
            parts.append(_plain_text(tok.children or []))
    return "".join(parts)


def _cell_align(tok: Token) -> str:
    style = str(tok.attrs.get("style", ""))
    for align in ("left", "center", "right"):
        if f"text-align:{align}" in style:
            return align
    return ""


def render_markdown(text: str, *, dark: bool = False, block_id_start: int = 0) -> Rendered:
    """Render chat Markdown to a Qt rich-text fragment.

    Code blocks get a header with the language and a ``copy-code:N`` link, N counting from
    ``block_id_start`` so a message rendered in parts (while streaming) keeps unique ids.
    """
    renderer = _Renderer(_DARK if dark else _LIGHT, block_id_start)
    html = renderer.render(_md.parse(text))
    return Rendered(html=html, code_blocks=renderer.code_blocks)


# -- streaming -------------------------------------------------------------------------------------

# Lenient on purpose: container markers (quote, list) before a fence still count, because wrongly
# seeing a fence only delays the split, while missing one would split a code block in two.
# Languages models write most; their lexers load once at start instead of during a first reply.
_COMMON_LANGUAGES = ("python", "bash", "javascript", "json", "c", "cpp", "rust", "java", "sql", "html")


def warm_up() -> None:
    """Load Pygments' styles and common lexers ahead of time (40-60 ms that would stall a first reply).

    Safe to run on a background thread: it only fills this module's caches.
    """
    for dark in (False, True):
        render_markdown("".join(f"```{lang}\nx = 1\n```\n\n" for lang in _COMMON_LANGUAGES), dark=dark)


_FENCE_OPEN = re.compile(r"^(?:[ \t]*(?:>|(?:[-*+]|\d{1,9}[.)])(?=[ \t])))*[ \t]*(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE = re.compile(r"^(?:[ \t]*>)*[ \t]*(`{3,}|~{3,})[ \t]*$")


def stable_prefix_length(text: str) -> int:
    """Length of the longest prefix of ``text`` made of complete blocks that more text cannot change.

    A prefix ends after a run of blank lines outside any open fenced code block, once the next line
    has started at column 0 (an indented line may still belong to the block before, such as a list
    item's second paragraph or an indented code block), or right after the closing line of a fence
    that opened at column 0. Returns 0 if there is none yet.
    """
    stable = 0
    fence_char, fence_len, fence_col = "", 0, 0
    blank_end = -1  # end of the latest run of blank lines outside fences, while the next line is unknown
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        complete = nl != -1
        end = nl + 1 if complete else n
        line = text[pos:nl if complete else n].rstrip("\r")
        if fence_char:
            m = _FENCE_CLOSE.match(line) if complete else None
            # A closing fence: same character, at least as long, indented at most 3 more than the opener
            # (more is code inside the block).
            if m and m.group(1)[0] == fence_char and len(m.group(1)) >= fence_len and m.start(1) <= fence_col + 3:
                fence_char = ""
                if fence_col == 0 and m.start(1) <= 3:
                    stable = end  # a top-level fence: nothing after it can reach back into it
        elif not line.strip():
            if complete:
                blank_end = end
        else:
            if blank_end != -1 and line[0] not in " \t":
                stable = blank_end
            blank_end = -1
            m = _FENCE_OPEN.match(line) if complete else None
            # A backtick fence's info string cannot hold a backtick: "```x```" is inline code.
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence_char, fence_len, fence_col = m.group(1)[0], len(m.group(1)), m.start(1)
        pos = end
    return stable
