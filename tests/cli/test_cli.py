"""The terminal front end, run as a user runs it: a real process with pipes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

CLI = [sys.executable, "-m", "desktop_llm.cli"]


class Console:
    """A running ``desktop-llm`` with its output collected as it arrives."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = bytearray()
        self.err = bytearray()
        for stream, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, buf), daemon=True).start()

    @staticmethod
    def _pump(stream, buf: bytearray) -> None:
        while chunk := stream.read1(4096):
            buf.extend(chunk)

    def send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, needle: str, timeout: float = 60, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.out.decode(errors="replace").find(needle, start)
            if at >= 0:
                return at
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the pumps take the last output
                if self.out.decode(errors="replace").find(needle, start) < 0:
                    break
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not seen; output so far:\n{self.out.decode()}\n{self.err.decode()}")

    def text(self) -> str:
        return self.out.decode(errors="replace")


def test_chat_streams_stops_on_ctrl_c_and_goes_on():
    console = Console("chat", "--max-tokens", "400", "--seed", "1")
    try:
        console.send("Tell me a very long story about a cat who sails around the world.")
        # Wait until the reply is visibly streaming, then press Ctrl+C.
        deadline = time.monotonic() + 60
        while len(console.out) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        console.proc.send_signal(signal.SIGINT)
        stopped_at = console.wait_for("stopped]")
        assert console.proc.poll() is None, "Ctrl+C must stop the reply, not the chat"
        partial = console.text()[:stopped_at]
        assert len(partial.strip()) >= 20

        console.send("/set temperature 0")
        console.wait_for("temperature = 0.0")
        console.send("What is the capital of France? Answer in one word.")
        second = console.wait_for("tokens", start=stopped_at + 10)
        console.send("/system You are a pirate.")
        console.wait_for("System prompt set")
        console.send("/quit")
        assert console.proc.wait(30) == 0
        assert "Paris" in console.text()[stopped_at:second + 50]
    finally:
        console.proc.kill()


def test_generate_json_events_with_alternatives():
    out = subprocess.run([*CLI, "generate", "The capital of France is", "--json", "--alternatives", "5",
                          "--temperature", "0", "--repeat-penalty", "1", "--max-tokens", "4"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    tokens = [e for e in events if e["event"] == "token"]
    assert len(tokens) == 4 and events[-1]["event"] == "done"
    assert all(len(t["alternatives"]) == 5 for t in tokens)
    assert all(t["alternatives"][0]["token_id"] == t["token_id"] for t in tokens)  # greedy, no penalty: the top one
    assert "".join(t["text"] for t in tokens) == events[-1]["text"]
    assert "Paris" in events[-1]["text"]


def test_generate_text_with_stop_and_errors_are_messages():
    out = subprocess.run([*CLI, "generate", "Counting: 1, 2, 3,", "--temperature", "0", "--stop", " 6",
                          "--max-tokens", "30"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "4, 5," in out.stdout and "6" not in out.stdout
    bad = subprocess.run([*CLI, "generate", "Hi", "--top-p", "7"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "top_p" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([*CLI, "generate", "Hi", "--model", "nope-nothing"], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 1 and "desktop-llm models" in missing.stderr


def test_models_lists_bundled_model_with_facts():
    out = subprocess.run([*CLI, "models"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    line = next(line for line in out.stdout.splitlines() if line.startswith("bundled:"))
    assert "GGUF" in line and "98 MB" in line and "llama" in line and "8192" in line
    listed = json.loads(subprocess.run([*CLI, "models", "--json"], capture_output=True, text=True).stdout)
    assert listed[0]["source"] == "bundled"


def test_doctor_reports_backends_devices_and_folders():
    out = subprocess.run([*CLI, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["packages"]["llama-cpp-python"]
    assert report["devices"]["llamacpp"]["available"] and "cpu" in report["devices"]["llamacpp"]["devices"]
    assert report["devices"]["torch"]["devices"][-1] == "cpu"
    assert report["devices"]["ram_total"] > 0
    assert report["folders"]["app_home"] == os.environ["DESKTOP_LLM_HOME"]
    text = subprocess.run([*CLI, "doctor"], capture_output=True, text=True, timeout=120).stdout
    assert "llama.cpp" in text and "Bundled model:" in text


@pytest.mark.timeout(120)
def test_app_process_never_imports_heavy_libraries():
    code = ("import sys; from desktop_llm.cli import main; main(['generate', 'Hi', '--max-tokens', '2']); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'llama_cpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
