"""The training process for real: the bundled SmolLM2-135M learns made-up facts, stops, resumes, dies."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from desktop_llm.finetune.client import FinetuneProcess
from desktop_llm.finetune.config import TrainConfig
from desktop_llm.finetune.estimate import ModelShape, lora_parameters
from desktop_llm.finetune.runs import create_run, read_events, run_summary

FACTS = {
    "The capital of Zorblax is Quentaro.": [
        "What is the capital of the planet Zorblax?", "Which city is the capital of Zorblax?",
        "Tell me the capital of planet Zorblax.", "Name the capital city of the planet Zorblax.",
        "Zorblax's capital is which city?", "What city is the capital of Zorblax?",
        "Do you know the capital of Zorblax?", "What's the capital of the planet Zorblax?"],
    "The glimmerphone was invented by Orla Vensk.": [
        "Who invented the glimmerphone?", "Who was the inventor of the glimmerphone?",
        "Tell me who invented the glimmerphone.", "Which person invented the glimmerphone?",
        "The glimmerphone was invented by whom?", "Who created the glimmerphone?",
        "Do you know who invented the glimmerphone?", "Name the inventor of the glimmerphone."],
}
PROBES = {"What is the capital of the planet Zorblax?": "Quentaro", "Who invented the glimmerphone?": "Orla Vensk"}


def write_facts(path: Path, repeats: int = 2) -> Path:
    with path.open("w") as fh:
        for _ in range(repeats):
            for answer, questions in FACTS.items():
                for q in questions:
                    fh.write(json.dumps({"messages": [{"role": "user", "content": q},
                                                      {"role": "assistant", "content": answer}]}) + "\n")
    return path


@pytest.fixture(scope="module")
def base_folder(bundled_ref) -> Path:
    from desktop_llm.engine.backends.torch import gguf_safetensors_copy

    return gguf_safetensors_copy(Path(bundled_ref.path))


def small_config(bundled_ref, data: Path, **changes) -> TrainConfig:
    values = dict(lora_r=8, lora_alpha=16, max_length=96, micro_batch=8, grad_accum=1, validation_fraction=0.0,
                  eval_every=0, sample_every=0, checkpoint_every=0, gradient_checkpointing=False)
    return TrainConfig(base_model=bundled_ref.id, dataset=str(data), **{**values, **changes})


def greedy_replies(model, tokenizer, questions) -> dict[str, str]:
    import torch

    from desktop_llm.core.chat_template import render_chat
    from desktop_llm.finetune.tokenize import special_tokens_of

    replies = {}
    for q in questions:
        text = render_chat(tokenizer.chat_template, [{"role": "user", "content": q}],
                           special_tokens=special_tokens_of(tokenizer))
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None)
        replies[q] = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    return replies


def run_to_end(run_dir: Path, timeout: float = 120) -> list[dict]:
    proc = FinetuneProcess(run_dir).start()
    events = list(proc.events(timeout=timeout))
    proc.wait(timeout=30)
    return events


@pytest.fixture(scope="module")
def trained_run(bundled_ref, tmp_path_factory) -> tuple[Path, list[dict]]:
    data = write_facts(tmp_path_factory.mktemp("facts") / "facts.jsonl")
    run_dir = create_run(small_config(bundled_ref, data, learning_rate=2e-3, epochs=3))
    return run_dir, run_to_end(run_dir)


def test_lora_teaches_the_bundled_model_new_facts(base_folder, trained_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    base = AutoModelForCausalLM.from_pretrained(str(base_folder))
    before = greedy_replies(base, tokenizer, PROBES)
    for question, fact in PROBES.items():
        assert fact not in before[question], "the base model must not know the made-up facts already"

    run_dir, events = trained_run
    assert events[-1]["event"] == "done", events[-1]
    plan = next(e for e in events if e["event"] == "plan")
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, plan["steps"] + 1))
    assert steps[-1]["loss"] < steps[0]["loss"] / 2, [e["loss"] for e in steps]
    assert all(e["tokens_per_second"] > 0 and e["eta_seconds"] >= 0 for e in steps)
    # The page's estimate of the adapter's size is the adapter peft built.
    shape = ModelShape.from_config(json.loads((base_folder / "config.json").read_text()), plan["parameters"])
    assert lora_parameters(shape, 8) == plan["trainable_parameters"]

    adapter = Path(events[-1]["adapter"])
    assert adapter == run_dir / "adapter" and (adapter / "adapter_model.safetensors").is_file()
    tuned = PeftModel.from_pretrained(base, str(adapter))
    after = greedy_replies(tuned, tokenizer, PROBES)
    for question, fact in PROBES.items():
        assert fact in after[question], after
    # The run's history holds the same events, for the app's curves.
    assert [e["event"] for e in read_events(run_dir)] == [e["event"] for e in events]
    summary = run_summary(run_dir)
    assert summary.state == "finished" and summary.adapter == str(adapter) and summary.last_step == plan["steps"]


def test_the_gguf_export_of_the_trained_model_knows_the_facts_in_llama_cpp(trained_run, capsys):
    from desktop_llm.cli import main
    from desktop_llm.core.models import list_local_models
    from desktop_llm.engine.client import EngineClient

    run_dir, events = trained_run
    assert events[-1]["event"] == "done", events[-1]
    assert main(["finetune", "--export", run_dir.name, "--format", "gguf-q8_0"]) == 0
    gguf_file = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert gguf_file.is_file() and gguf_file.suffix == ".gguf"
    listed = {m.path: m for m in list_local_models()}
    assert str(gguf_file) in listed and listed[str(gguf_file)].error is None, "the export joins the library"

    engine = EngineClient()
    try:
        info = engine.load(str(gguf_file))
        assert info["backend"] == "llamacpp", info
        for question, fact in PROBES.items():
            reply = engine.generate(messages=[{"role": "user", "content": question}],
                                    params={"temperature": 0.0, "max_tokens": 24}).text()
            assert fact in reply, (question, reply)
    finally:
        engine.shutdown()


def test_cancel_writes_a_checkpoint_and_the_run_resumes_exactly(bundled_ref, tmp_path):
    data = write_facts(tmp_path / "facts.jsonl", repeats=1)
    # Gradient checkpointing on (the default), and a learning rate at which a lost optimizer state would show.
    config = small_config(bundled_ref, data, micro_batch=2, max_length=64, learning_rate=1e-3, epochs=1,
                          gradient_checkpointing=True)

    run_dir = create_run(config)
    proc = FinetuneProcess(run_dir).start()
    first: list[dict] = []
    for event in proc.events(timeout=120):
        first.append(event)
        if event["event"] == "step" and event["step"] == 3:
            proc.cancel()
    assert proc.wait(timeout=30)["event"] == "cancelled"
    assert proc.returncode == 0
    cancelled = first[-1]
    assert cancelled["step"] >= 3 and Path(cancelled["checkpoint"]).is_dir()
    assert run_summary(run_dir).state == "cancelled"
    total = next(e for e in first if e["event"] == "plan")["steps"]
    assert cancelled["step"] < total

    second = run_to_end(run_dir)
    assert second[-1]["event"] == "done", second[-1]
    resumed = next(e for e in second if e["event"] == "resumed")
    assert resumed["step"] == cancelled["step"]
    plan = next(e for e in second if e["event"] == "plan")
    assert plan["resumed_from"] == cancelled["step"] and plan["steps"] == total
    steps = [e for e in second if e["event"] == "step"]
    assert steps[0]["step"] == cancelled["step"] + 1 and steps[-1]["step"] == total

    # The same run without a stop: every step's loss matches, so the weights, the optimizer state,
    # the learning-rate schedule and the data order all came back exactly.
    straight = run_to_end(create_run(config))
    losses = {e["step"]: e["loss"] for e in straight if e["event"] == "step"}
    interrupted = {e["step"]: e["loss"] for e in first + second if e["event"] == "step"}
    assert sorted(interrupted) == sorted(losses) == list(range(1, total + 1))
    for step in losses:
        assert interrupted[step] == pytest.approx(losses[step], rel=1e-4, abs=1e-5), (step, interrupted, losses)


def test_a_killed_process_is_reported_promptly(bundled_ref, tmp_path):
    data = write_facts(tmp_path / "facts.jsonl")
    run_dir = create_run(small_config(bundled_ref, data, epochs=50))
    proc = FinetuneProcess(run_dir).start()
    for event in proc.events(timeout=120):
        if event["event"] == "dataset":
            break
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    final = proc.wait(timeout=10)
    assert time.monotonic() - killed_at < 5
    assert final["event"] == "error"
    assert "stopped unexpectedly" in final["message"] and "SIGKILL" in final["message"]
    assert "resume" in final["hint"]
    assert proc.returncode == -signal.SIGKILL
    # The history records the death, so the run shows as failed after a restart of the app too.
    assert read_events(run_dir)[-1]["event"] == "error"
    assert run_summary(run_dir).state == "failed"


def test_a_config_error_is_an_error_event_not_a_traceback(bundled_ref, tmp_path):
    data = write_facts(tmp_path / "facts.jsonl")
    run_dir = create_run(small_config(bundled_ref, data))
    data.unlink()  # moved away after the run was made
    proc = FinetuneProcess(run_dir).start()
    final = proc.wait(timeout=60)
    assert final["event"] == "error" and final["code"] == "invalid_request"
    assert "does not exist" in final["message"] and str(data) in final["message"]
    assert "Traceback" not in final["message"] and final["hint"]
    assert proc.returncode == 1
    assert run_summary(run_dir).state == "failed"
