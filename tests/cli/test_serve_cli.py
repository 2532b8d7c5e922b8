"""``desktop-llm serve`` as a user runs it: a real process, its log on stderr, Ctrl+C to stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

CLI = [sys.executable, "-m", "desktop_llm.cli"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait_for(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"{pattern!r} not in: {''.join(seen)}")


def test_serve_with_a_key_from_the_environment_logs_requests_and_stops_on_ctrl_c(tmp_path):
    env = {**os.environ, "DESKTOP_LLM_HOME": str(tmp_path / "home"), "DESKTOP_LLM_API_KEY": "sk-cli-key-98765"}
    proc = subprocess.Popen([*CLI, "serve", "--port", "0", "--preload", "bundled", "--idle-unload", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT,
                            stdin=subprocess.DEVNULL)
    try:
        url = _wait_for(proc, r"Serving on (http://127\.0\.0\.1:\d+/v1) \(API key required\)").group(1)
        oai = openai.OpenAI(base_url=url, api_key="sk-cli-key-98765", max_retries=0)
        model = oai.models.list().data[0].id
        reply = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert reply.usage.completion_tokens == 3
        line = _wait_for(proc, r"POST\s+/v1/chat/completions\s+200").string
        assert model in line and "tokens" in line and "ms" in line and "sk-cli-key" not in line
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        _wait_for(proc, r"GET\s+/v1/models\s+401")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
    assert "Stopped." in proc.stderr.read()


def test_serve_refuses_another_address_without_a_key(tmp_path):
    env = {**os.environ, "DESKTOP_LLM_HOME": str(tmp_path / "home")}
    env.pop("DESKTOP_LLM_API_KEY", None)
    out = subprocess.run([*CLI, "serve", "--host", "0.0.0.0", "--port", "0", "--no-key"], capture_output=True,
                         text=True, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, timeout=60)
    assert out.returncode == 1
    assert "set an API key first" in out.stderr
