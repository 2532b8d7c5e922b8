from __future__ import annotations

import pytest

from desktop_llm.core.chat_template import render_chat
from desktop_llm.core.errors import TemplateError


def test_chatml_when_the_model_has_no_template():
    text = render_chat(None, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_template_helpers_like_transformers():
    template = ("{{ bos_token }}{% for m in messages %}{{ m.content | tojson }}{% endfor %}"
                "{% if messages | length > 1 %}{{ raise_exception('one message only') }}{% endif %}")
    assert render_chat(template, [{"role": "user", "content": "é<b>"}], special_tokens={"bos_token": "<s>"}) \
        == '<s>"é<b>"'
    with pytest.raises(TemplateError, match="one message only"):
        render_chat(template, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_namespace_and_loop_controls_work_but_dunder_names_do_not():
    ok = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
          "{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}")
    assert render_chat(ok, [{"role": "user", "content": "x"}] * 5) == "2"
    with pytest.raises(TemplateError, match="not allowed"):
        render_chat("{% set ns = namespace() %}{% set ns.__dict__ = 1 %}", [{"role": "user", "content": "x"}])


def test_bad_messages_are_named():
    with pytest.raises(TemplateError, match="Message 2 has role 'robot'"):
        render_chat(None, [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
