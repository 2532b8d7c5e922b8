"""``desktop-llm finetune`` run as a user runs it: a real process, real training of the bundled model."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.finetune.test_trainer import write_facts

CLI = [sys.executable, "-m", "desktop_llm.cli", "finetune"]
# Short records and no samples: the tests are about the command, not about learning.
FAST = {"max_length": 64, "micro_batch": 2, "grad_accum": 1, "eval_every": 0, "sample_every": 0,
        "validation_fraction": 0.0}


def fast_config(tmp_path: Path) -> str:
    path = tmp_path / "fast.json"
    path.write_text(json.dumps(FAST))
    return str(path)


def test_finetune_prints_the_plan_progress_and_the_adapter(tmp_path):
    data = write_facts(tmp_path / "facts.jsonl", repeats=3)
    done = subprocess.run([*CLI, "--base", "bundled", "--data", str(data), "--preset", "Quick test",
                           "--max-steps", "4"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "Dataset: 48 records: 48 usable, no problems" in err
    assert re.search(r"Plan: \d+ training records, \d+ for validation; 4 steps", err), err
    for n in range(1, 5):
        assert re.search(rf"step {n}/4  loss \d+\.\d+  \d+ tok/s  ETA ", err), err
    assert "validation loss" in err and "sample at step 4" in err
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("Run folder: ")
    assert lines[-1].startswith("Adapter: ")
    adapter = Path(lines[-1].removeprefix("Adapter: "))
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert adapter.parent == Path(lines[-2].removeprefix("Run folder: "))


def test_bad_lines_are_reported_with_their_numbers_before_training(tmp_path):
    good = write_facts(tmp_path / "good.jsonl", repeats=1).read_text().splitlines()
    bad = [good[0], '{"messages": [{"role": "user", "content": "broken"', good[1],
           json.dumps({"messages": [{"role": "user", "content": "Hello?"}]}), *good[2:]]
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(bad) + "\n")
    done = subprocess.run([*CLI, "--base", "bundled", "--data", str(data), "--config", fast_config(tmp_path),
                           "--max-steps", "1"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "18 records: 16 usable, 2 with problems (2 left out)" in err
    line2, line4, training = err.find("Line 2: the JSON is malformed"), err.find("Line 4: "), err.find("Training")
    assert 0 < line2 < line4 < training, err
    assert "no assistant reply" in err[line4:training]
    assert done.stdout.strip().splitlines()[-1].startswith("Adapter: ")


def test_ctrl_c_keeps_a_checkpoint_and_resume_finishes_the_run(tmp_path):
    data = write_facts(tmp_path / "facts.jsonl", repeats=1)
    proc = subprocess.Popen([*CLI, "--data", str(data), "--config", fast_config(tmp_path), "--max-steps", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait for the first step line, then press Ctrl+C.
        err = ""
        deadline = time.monotonic() + 120
        while "step 1/6" not in err and time.monotonic() < deadline:
            err += proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err += rest
    assert proc.returncode == 130, err
    assert "Stopping after the current step" in err
    assert re.search(r"Stopped at step [1-5]; checkpoint kept in \S+step-0000\d", err), err
    resume = re.search(r"Resume with: desktop-llm finetune --resume (\S+)", err)
    assert resume, err

    done = subprocess.run([*CLI, "--resume", resume.group(1)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Resuming from step" in done.stderr and "step 6/6" in done.stderr
    assert "step 1/6" not in done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("Adapter: ")
