"""The PyTorch backend on real weights: the bundled GGUF (dequantized by transformers) and a tiny
randomly initialised Llama saved as safetensors. No mocks."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from desktop_llm.core.errors import InvalidRequest, ModelLoadError, UnsupportedParameter
from desktop_llm.core.models import ref_for_path
from desktop_llm.core.paths import HOME_ENV
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.engine.backends.torch import CONVERT_STAGE, TorchBackend, gguf_copy_folder
from desktop_llm.engine.generation import Cancelled, run_generation

CHAT = [{"role": "user", "content": "Write one sentence about the sea."}]


def generate(backend, request, cancel=None, on_token=None):
    events = []

    def emit(event):
        events.append(event)
        if on_token is not None:
            on_token(event, events)

    done = run_generation(backend, request, cancel or threading.Event(), emit)
    return done, events


# -- loading the bundled GGUF ------------------------------------------------------------------
def test_gguf_first_load_converts_to_a_safetensors_copy(torch_smol):
    info = torch_smol.info
    assert info["backend"] == "torch"
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["architecture"] == "llama"
    assert info["n_vocab"] == 49152
    assert info["n_ctx_train"] == 8192 and info["n_ctx"] == 4096  # min(train context, 4096)
    assert info["has_chat_template"] is True
    stages = [s for s, _ in torch_smol.stages]
    assert CONVERT_STAGE in stages and "loading weights" in stages
    assert stages.index(CONVERT_STAGE) < stages.index("loading weights")
    assert all(0.0 <= f <= 1.0 for _, f in torch_smol.stages)

    copy = torch_smol.copy
    assert Path(info["weights"]) == copy
    assert copy.is_relative_to(torch_smol.home / "cache" / "torch-from-gguf")
    assert list(copy.glob("*.safetensors"))
    assert (copy / "tokenizer.json").is_file()
    config = json.loads((copy / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model, usable by the Trainer too
    saved_template = (copy / "chat_template.jinja").read_text() if (copy / "chat_template.jinja").exists() \
        else json.loads((copy / "tokenizer_config.json").read_text())["chat_template"]
    assert saved_template == torch_smol.backend.chat_template()
    # Leftovers of a crashed conversion were never used: the old one is gone, a fresh one
    # (possibly another engine still at work) is left alone, and no new partial copy remains.
    assert not torch_smol.leftovers["old"].exists()
    assert torch_smol.leftovers["fresh"].exists()
    partials = sorted(p.name for p in copy.parent.iterdir() if ".partial-" in p.name)
    assert partials == [torch_smol.leftovers["fresh"].name]


def test_second_load_uses_the_cached_copy(torch_smol, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(torch_smol.home))
    stages = []
    backend = TorchBackend()
    started = time.perf_counter()
    info = backend.load(torch_smol.ref, {}, lambda stage, fraction: stages.append(stage))
    print(f"\ntorch backend cached load: {time.perf_counter() - started:.2f} s "
          f"(first load {torch_smol.load_seconds:.1f} s)")
    try:
        assert CONVERT_STAGE not in stages
        assert info["weights"] == torch_smol.info["weights"]
        assert list(Path(info["weights"]).glob("*.safetensors"))
        tokens = backend.tokenize("The capital of France is", True, True)
        assert backend.next_token_logits(tokens).argmax() == torch_smol.backend.next_token_logits(tokens).argmax()
    finally:
        backend.unload()


def test_copy_key_follows_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 60)
    first = gguf_copy_folder(f)
    assert gguf_copy_folder(f) == first
    stamp = f.stat().st_mtime - 100
    os.utime(f, (stamp, stamp))
    assert gguf_copy_folder(f) != first
    g = tmp_path / "other.gguf"
    shutil.copy2(f, g)
    assert gguf_copy_folder(g) != gguf_copy_folder(f)
    assert first.parent == tmp_path / "home" / "cache" / "torch-from-gguf"


# -- generation on the bundled model -----------------------------------------------------------
def test_chat_reply_streams_and_token_texts_add_up(torch_smol):
    backend = torch_smol.backend
    done, events = generate(backend, {"messages": CHAT, "params": {"seed": 7, "max_tokens": 24},
                                      "alternatives": 3})
    tokens = [e for e in events if e["event"] == "token"]
    assert tokens and done["text"].strip()
    assert "".join(e["text"] for e in tokens) == done["text"]
    assert done["usage"]["completion_tokens"] == len(tokens)
    assert done["usage"]["prompt_tokens"] > 10
    # The pieces are the exact UTF-8 of the text.
    assert b"".join(backend.token_piece(e["token_id"]) for e in tokens).decode("utf-8") == done["text"]
    for e in tokens:
        assert e["logprob"] <= 0
        alts = e["alternatives"]
        assert len(alts) == 3
        assert [a["logprob"] for a in alts] == sorted((a["logprob"] for a in alts), reverse=True)
        for a in alts:
            if a["token_id"] == e["token_id"]:
                assert a["logprob"] == pytest.approx(e["logprob"], abs=1e-6)


def test_greedy_chat_stops_at_end_of_turn(torch_smol):
    done, events = generate(torch_smol.backend, {"messages": [{"role": "user", "content": "Say hello."}],
                                                 "params": {"temperature": 0, "max_tokens": 64}})
    assert done["finish_reason"] == "stop" and done["stop_sequence"] is None
    assert done["text"].strip()
    assert "<|im_end|>" not in done["text"]
    assert all(e["token_id"] not in torch_smol.backend._eog for e in events)


def test_same_seed_gives_the_same_text(torch_smol):
    backend = torch_smol.backend
    request = {"messages": CHAT, "params": {"seed": 1234, "temperature": 1.0, "max_tokens": 16}}
    first, _ = generate(backend, request)
    # Another prompt in between changes the KV cache; the seeded reply must not change.
    generate(backend, {"prompt": "Once upon a time", "params": {"seed": 1, "max_tokens": 4}})
    second, _ = generate(backend, request)
    assert first["text"] == second["text"] and first["text"]
    others = {generate(backend, {**request, "params": {**request["params"], "seed": s}})[0]["text"]
              for s in (1, 2)}
    assert len(others | {first["text"]}) > 1  # the seed does change the draw


def test_prefix_reuse_gives_the_same_logits_as_a_fresh_pass(torch_smol):
    backend = torch_smol.backend
    prompt = backend.tokenize("The quick brown fox jumps over the lazy dog because", True, True)
    fresh = backend.next_token_logits(prompt)
    backend._eval_prompt(prompt[:-3] + [42, 43], threading.Event())  # cache with a shared prefix
    reused = backend._eval_prompt(prompt, threading.Event()).numpy()
    assert backend._cache_tokens == prompt
    assert abs(fresh - reused).max() < 1e-3
    assert fresh.argmax() == reused.argmax()


def test_stop_sequence_cuts_the_reply(torch_smol):
    backend = torch_smol.backend
    params = {"temperature": 0, "max_tokens": 20}
    full, _ = generate(backend, {"prompt": "Count: 1, 2, 3,", "params": params})
    assert len(full["text"]) > 12
    stop = full["text"][6:9]
    cut, events = generate(backend, {"prompt": "Count: 1, 2, 3,", "params": {**params, "stop": [stop]}})
    assert cut["finish_reason"] == "stop" and cut["stop_sequence"] == stop
    assert cut["text"] == full["text"][: full["text"].index(stop)]
    assert "".join(e["text"] for e in events) == cut["text"]


def test_cancel_mid_stream_stops_within_one_token(torch_smol):
    cancel = threading.Event()

    def on_token(event, events):
        if len(events) == 3:
            cancel.set()

    done, events = generate(torch_smol.backend, {"messages": CHAT, "params": {"seed": 3, "max_tokens": 50}},
                            cancel, on_token)
    assert done["finish_reason"] == "cancelled"
    assert len(events) == 3 and done["usage"]["completion_tokens"] == 3


def test_cancel_during_a_long_prompt(torch_smol):
    backend = torch_smol.backend
    prompt = backend.tokenize("a b c d e f g h " * 150, True, True)
    assert len(prompt) > 1000
    cancel = threading.Event()
    stop_watching = threading.Event()

    def watch():  # cancel as soon as the first chunk of the prompt is in the cache
        while not stop_watching.is_set():
            if len(backend._cache_tokens) >= 256 and backend._cache_tokens == prompt[: len(backend._cache_tokens)]:
                cancel.set()
                return
            time.sleep(0.001)

    backend._cache, backend._cache_tokens = None, []
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(Cancelled):
            next(backend.stream(prompt, SamplingParams(), 0, cancel))
    finally:
        stop_watching.set()
        watcher.join()
    assert len(backend._cache_tokens) < len(prompt)
    # The backend is still usable, and the cache it kept is consistent.
    done, _ = generate(backend, {"prompt": "Hello", "params": {"temperature": 0, "max_tokens": 3}})
    assert done["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize(("params", "name"), [
    ({"mirostat_mode": 1}, "mirostat_mode"),
    ({"mirostat_mode": 2}, "mirostat_mode"),
    ({"grammar": 'root ::= "yes" | "no"'}, "grammar"),
    ({"json_schema": {"type": "object"}}, "json_schema"),
])
def test_parameters_it_cannot_honour_are_rejected(torch_smol, params, name):
    with pytest.raises(UnsupportedParameter) as err:
        generate(torch_smol.backend, {"prompt": "Hi", "params": params})
    assert f"'{name}'" in err.value.message
    assert "llama.cpp" in str(err.value)


def test_empty_prompt_is_a_clear_error(torch_smol):
    with pytest.raises(InvalidRequest, match="empty"):
        generate(torch_smol.backend, {"prompt": "", "params": {"max_tokens": 2}})


def test_logit_bias_outside_the_vocabulary_is_rejected(torch_smol):
    with pytest.raises(InvalidRequest, match="60000"):
        generate(torch_smol.backend, {"prompt": "Hi", "params": {"logit_bias": {"60000": 1.0}}})


def test_token_pieces_are_exact_utf8(torch_smol):
    backend = torch_smol.backend
    text = "Grüße, 日本語 and emoji 🤖🎉 — ok\n\ttabs"
    ids = backend.tokenize(text, False, False)
    pieces = [backend.token_piece(i) for i in ids]
    assert b"".join(pieces) == text.encode("utf-8")
    assert any(not _is_utf8(p) for p in pieces)  # some tokens are parts of a character
    assert backend.detokenize(ids) == text
    # Special tokens: parsed as one token only when asked to.
    assert backend.tokenize("<|im_start|>", False, True) == [1]
    assert len(backend.tokenize("<|im_start|>", False, False)) > 1
    assert backend.token_piece(1) == b"<|im_start|>"
    assert backend.special_tokens()["eos_token"] == "<|im_end|>"


def _is_utf8(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- sampling semantics (llama.cpp's), on crafted logits ------------------------------------
def _draws(params: SamplingParams, logits, history=(), n=200, seed=0) -> list[int]:
    backend = TorchBackend()
    gen = torch.Generator()
    gen.manual_seed(seed)
    x = torch.tensor(logits, dtype=torch.float32)
    return [backend.sample(x, params, list(history), gen) for _ in range(n)]


def _greedy(logits, history=(), **kw) -> int:
    return _draws(SamplingParams(temperature=0, **kw), logits, history, n=1)[0]


def test_penalties_follow_llama_cpp():
    plain = {"repeat_penalty": 1.0}
    # Repeat penalty divides a positive logit and multiplies a negative one.
    assert _greedy([2.0, 1.9], [0], repeat_penalty=1.1) == 1
    assert _greedy([2.0, 1.9], [0], repeat_penalty=1.0) == 0
    assert _greedy([-1.0, -1.05], [0], repeat_penalty=1.1) == 1
    # Only the last repeat_last_n tokens count.
    assert _greedy([2.0, 1.9], [0, 1, 1, 1], repeat_penalty=1.1, repeat_last_n=3) == 0
    # Frequency penalty scales with the count, presence penalty does not.
    assert _greedy([2.0, 1.5], [0, 0, 0], frequency_penalty=0.2, **plain) == 1
    assert _greedy([2.0, 1.5], [0], frequency_penalty=0.2, **plain) == 0
    assert _greedy([2.0, 1.5], [0, 0, 0], presence_penalty=0.4, **plain) == 0
    assert _greedy([2.0, 1.5], [0, 0, 0], presence_penalty=0.6, **plain) == 1
    # Logit bias, including a ban.
    assert _greedy([2.0, 1.5], logit_bias={0: float("-inf")}) == 1
    assert _greedy([2.0, 1.5], logit_bias={1: 1.0}) == 1


def test_truncation_samplers_follow_llama_cpp():
    import math

    probs = [0.5, 0.3, 0.15, 0.05]
    logits = [math.log(p) for p in probs]
    base = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0, "repeat_penalty": 1.0}
    everything = set(_draws(SamplingParams(**base), logits, n=400))
    assert everything == {0, 1, 2, 3}
    assert set(_draws(SamplingParams(**{**base, "top_k": 1}), logits)) == {0}
    assert set(_draws(SamplingParams(**{**base, "top_k": 2}), logits)) == {0, 1}
    assert set(_draws(SamplingParams(**{**base, "top_p": 0.75}), logits)) == {0, 1}
    assert set(_draws(SamplingParams(**{**base, "min_p": 0.2}), logits)) == {0, 1, 2}
    # Typical sampling keeps the tokens whose surprise is closest to the entropy (1.14 nats):
    # token 1 (p 0.3) first, then token 0 (p 0.5) — not simply the most likely ones.
    assert set(_draws(SamplingParams(**{**base, "typical_p": 0.2}), logits)) == {1}
    assert set(_draws(SamplingParams(**{**base, "typical_p": 0.5}), logits)) == {0, 1}
    # Temperature sharpens; the same seed repeats the same draws.
    assert set(_draws(SamplingParams(**{**base, "temperature": 0.01}), logits)) == {0}
    assert _draws(SamplingParams(**base), logits, seed=5) == _draws(SamplingParams(**base), logits, seed=5)
    assert _draws(SamplingParams(**base), logits, seed=5) != _draws(SamplingParams(**base), logits, seed=6)


# -- Hugging Face model folders ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_llama(torch_smol, tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights, saved as safetensors with the bundled model's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(torch_smol.info["weights"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    return folder


def test_tiny_hf_folder_loads_and_generates(tiny_llama):
    ref = ref_for_path(tiny_llama)
    assert ref.format == "hf"
    backend = TorchBackend()
    stages = []
    threads = torch.get_num_threads()
    info = backend.load(ref, {"n_threads": 1}, lambda stage, fraction: stages.append(stage))
    try:
        assert CONVERT_STAGE not in stages
        assert info["architecture"] == "llama" and info["n_ctx"] == 512 and info["n_ctx_train"] == 512
        assert info["options"]["n_threads"] == 1 and info["options"]["trust_remote_code"] is False
        done, events = generate(backend, {"prompt": "Hello there", "params": {"temperature": 0, "max_tokens": 8},
                                          "alternatives": 2})
        assert done["finish_reason"] == "length" and len(events) == 8
        assert "".join(e["text"] for e in events) == done["text"]
        chat, _ = generate(backend, {"messages": CHAT, "params": {"seed": 1, "max_tokens": 4}})
        assert chat["usage"]["completion_tokens"] >= 1
    finally:
        backend.unload()
        torch.set_num_threads(threads)


def test_load_options_dtype_context_and_device(tiny_llama):
    ref = ref_for_path(tiny_llama)
    backend = TorchBackend()
    info = backend.load(ref, {"dtype": "bfloat16", "n_ctx": 64, "device": "cpu"}, lambda *a: None)
    try:
        assert info["dtype"] == "bfloat16" and info["n_ctx"] == 64
        assert next(backend.model.parameters()).dtype == torch.bfloat16
        done, _ = generate(backend, {"prompt": "Hi", "params": {"temperature": 0, "max_tokens": 3}})
        assert done["usage"]["completion_tokens"] == 3
    finally:
        backend.unload()
    with pytest.raises(InvalidRequest, match="too small"):
        TorchBackend().load(ref, {"n_ctx": 8}, lambda *a: None)
    with pytest.raises(InvalidRequest, match="cuda:99"):
        TorchBackend().load(ref, {"device": "cuda:99"}, lambda *a: None)
    with pytest.raises(InvalidRequest, match="float8"):
        TorchBackend().load(ref, {"dtype": "float8"}, lambda *a: None)
    with pytest.raises(UnsupportedParameter, match="n_gpu_layers"):
        TorchBackend().load(ref, {"n_gpu_layers": 10}, lambda *a: None)


class _Trap:
    """Unpickling this creates a file: proof that a pickle was opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_only_folder_is_refused(tiny_llama, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    marker = tmp_path / "unpickled.txt"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    ref = ref_for_path(folder)
    assert ref.format == "hf"
    with pytest.raises(ModelLoadError) as err:
        TorchBackend().load(ref, {}, lambda *a: None)
    message = str(err.value)
    assert "pytorch_model.bin" in message and "pickle" in message and "safetensors" in message
    assert not marker.exists()


def test_remote_code_needs_trust(tiny_llama, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_llama, folder)
    marker = tmp_path / "remote-code-ran.txt"
    code = f"open({str(marker)!r}, 'w').close()\n"
    # Subclasses, not the library's classes re-exported: loading remote code registers the class for
    # auto-loading, which on LlamaForCausalLM itself would mark every later llama model as remote code.
    (folder / "configuration_custom.py").write_text(code + (
        "from transformers import LlamaConfig\n\n\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'custom-llm'\n"))
    (folder / "modeling_custom.py").write_text(code + (
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n"))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-llm", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModelForCausalLM": "modeling_custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        TorchBackend().load(ref_for_path(folder), {}, lambda *a: None)
    assert not marker.exists()
    # With the option on, the folder's code does run (so the refusal above is what kept it out).
    backend = TorchBackend()
    info = backend.load(ref_for_path(folder), {"trust_remote_code": True}, lambda *a: None)
    backend.unload()
    assert info["options"]["trust_remote_code"] is True
    assert marker.exists()
