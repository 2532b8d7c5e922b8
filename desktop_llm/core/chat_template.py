"""Render a model's own chat template safely.

Chat templates come from downloaded files, so they are untrusted code (CVE-2024-34359: a
GGUF template that reached Python internals through an unsandboxed Jinja). They run here in
Jinja's ``ImmutableSandboxedEnvironment`` with the same globals, filters and options that
transformers' ``apply_chat_template`` provides, so a template renders the same text in both
backends and in the app itself (for counting context).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from desktop_llm.core.errors import TemplateError

# Used when a model has no template of its own (ChatML, the most common format).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ROLES = ("system", "user", "assistant", "tool")


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}`` marks assistant text in training templates; renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML; templates expect plain JSON, as in transformers.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Namespace(jinja2.utils.Namespace):
    """A namespace that refuses underscore names, so a template cannot plant dunder attributes."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - Jinja's own signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates may not set the attribute {name!r}")


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _Namespace
    # The sandbox's own `dict` global is fine; transformers exposes dict() the same way.
    env.globals["dict"] = dict
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"The model's chat template has a syntax error (line {exc.lineno}: {exc.message}).",
            "Use a different chat template in the model settings.",
        ) from exc


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check chat messages and copy them into plain dicts (role + content)."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages, 1):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if role not in ROLES:
            raise TemplateError(f"Message {i} has role {role!r}; a role must be one of {', '.join(ROLES)}.")
        if not isinstance(content, str):
            raise TemplateError(f"Message {i} has no text content.")
        out.append({k: v for k, v in message.items()})
    return out


def render_chat(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    special_tokens: Mapping[str, str] | None = None,
    **extra: Any,
) -> str:
    """Render ``messages`` with the model's ``template`` (ChatML if the model has none).

    ``special_tokens`` are passed as template variables (``bos_token``, ``eos_token`` …), as
    transformers passes its tokenizer's special tokens map.
    """
    compiled = _compile(template or CHATML_TEMPLATE)
    variables = {**(special_tokens or {}), **extra}
    try:
        return compiled.render(
            messages=normalize_messages(messages), add_generation_prompt=add_generation_prompt, **variables
        )
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(
            "The model's chat template tried to reach something it is not allowed to, and was stopped.",
            "The template may be malicious: do not trust this model file, or replace its chat template.",
        ) from exc
    except jinja2.exceptions.TemplateError as exc:
        raise TemplateError(f"The model's chat template refused this conversation: {exc}.",
                            "Check the roles and order of the messages, or use a different template.") from exc
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise TemplateError(f"The model's chat template failed to render: {exc}.",
                            "Use a different chat template in the model settings.") from exc
