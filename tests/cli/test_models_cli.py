"""``desktop-llm models search|info|download|list|delete`` against the Hub look-alike, run as a user runs it:
a real process, its stdout, stderr and exit code (and Ctrl+C for a download)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hub.hub_fixtures import GGUF_REPO

CLI = [sys.executable, "-m", "desktop_llm.cli"]
REPO_ROOT = Path(__file__).resolve().parents[2]  # cwd of the CLI: tests.memory_keyring is importable from there
BIG = "SmolOrg/Big-GGUF"


class Cli:
    """Runs ``desktop-llm`` with the fake Hub as endpoint and a private HF cache and app home."""

    def __init__(self, hub, tmp_path: Path) -> None:
        self.cache = tmp_path / "hf-cache"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(self.cache),
                    "DESKTOP_LLM_HOME": str(tmp_path / "home")}

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=self.env, cwd=REPO_ROOT,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)

    def repo_dir(self, repo_id: str) -> Path:
        return self.cache / ("models--" + repo_id.replace("/", "--"))


@pytest.fixture()
def cli(populated_hub, tmp_path) -> Cli:
    return Cli(populated_hub, tmp_path)


def ok(out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    return out


def failed(out: subprocess.CompletedProcess, code: int = 1) -> str:
    """The stderr of a run that failed as a user should see it: the exit code, a message, no traceback."""
    assert out.returncode == code, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr


def rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


# -- search --------------------------------------------------------------------------------------
def test_search_lists_gguf_repos_with_columns_sorted_filtered_and_paged(cli):
    table = rows(ok(cli("models", "search", "smol")).stdout)
    assert table[0].split() == ["MODEL", "DOWNLOADS", "LIKES", "UPDATED", "LICENSE", "ACCESS"]
    assert [r.split()[0] for r in table[1:]] == [GGUF_REPO, BIG]  # most downloaded first; no transformers repo
    assert table[1].split()[1:] == ["5.0k", "40", "2026-10-01", "apache-2.0", "open"]
    assert table[2].split()[1:] == ["900", "5", "2026-11-01", "apache-2.0", "open"]

    transformers = rows(ok(cli("models", "search", "smol", "--format", "transformers")).stdout)
    assert [r.split()[0] for r in transformers[1:]] == ["SmolOrg/tiny-transformers"]

    recent = rows(ok(cli("models", "search", "smol", "--sort", "recent")).stdout)
    assert [r.split()[0] for r in recent[1:]] == [BIG, GGUF_REPO]

    found = json.loads(ok(cli("models", "search", "smol", "--json")).stdout)
    assert [m["repo_id"] for m in found] == [GGUF_REPO, BIG]
    assert found[0] == {"repo_id": GGUF_REPO, "author": "SmolOrg", "downloads": 5000, "likes": 40,
                        "last_modified": "2026-10-01T00:00:00+00:00", "license": "apache-2.0", "gated": False,
                        "formats": ["gguf"]}

    empty = ok(cli("models", "search", "smol", "--page", "2"))
    assert empty.stdout.strip() == "No models match."


# -- info ----------------------------------------------------------------------------------------
def quant_rows(stdout: str) -> dict[str, list[str]]:
    """Quantization table rows by name, as cells: ★ (or "" when not recommended), name, size, unit, files, fit..."""
    out = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == "★":
            out[cells[1]] = cells
        elif cells and cells[0] in ("Q2_K", "Q4_K_M", "Q8_0", "F16", "Q4_0"):
            out[cells[0]] = ["", *cells]
    return out


def test_info_shows_card_quantizations_fit_and_the_recommended_one(cli):
    text = ok(cli("models", "info", GGUF_REPO)).stdout
    assert text.splitlines()[0].startswith(f"{GGUF_REPO}  (5.0k downloads, 40 likes, license apache-2.0)")
    assert "SmolLM2 GGUF" in text and "Small and fast." in text  # the card excerpt, front matter dropped
    assert "license: apache-2.0" not in text
    quants = quant_rows(text)
    assert set(quants) == {"Q2_K", "Q4_K_M", "Q8_0", "F16"}
    assert [name for name, cells in quants.items() if cells[0] == "★"] == ["Q4_K_M"]
    assert "98 MB" in " ".join(quants["Q4_K_M"]) and "0.2 MB" in " ".join(quants["Q2_K"])
    for cells in quants.values():
        line = " ".join(cells)
        assert "needs" in line and "GB" in line  # the fit: what it needs of this machine's memory
    assert f"Recommended: Q4_K_M. Download with: desktop-llm models download {GGUF_REPO}" in text

    info = json.loads(ok(cli("models", "info", GGUF_REPO, "--json")).stdout)
    assert info["repo_id"] == GGUF_REPO and len(info["commit"]) == 40
    recommended = [q["name"] for q in info["quantizations"] if q["recommended"] is True]
    assert recommended == ["Q4_K_M"]
    by_name = {q["name"]: q for q in info["quantizations"]}
    assert by_name["Q8_0"]["size"] == 600_000 and by_name["Q8_0"]["files"] == ["SmolLM2-135M-Instruct-Q8_0.gguf"]
    assert all(q["fit"] in ("gpu", "partial", "cpu", "no") and q["summary"] for q in by_name.values())
    assert {f["path"] for f in info["files"]} >= {"README.md", "SmolLM2-135M-Instruct-Q4_K_M.gguf"}

    split = ok(cli("models", "info", BIG)).stdout
    q4 = quant_rows(split)["Q4_K_M"]
    assert q4[:5] == ["★", "Q4_K_M", "0.5", "MB", "2"]  # one quantization of 2 files, 500 KB in all
    assert quant_rows(split)["Q8_0"][1:5] == ["Q8_0", "0.9", "MB", "1"]


def test_info_of_a_gated_repo_without_token_still_shows_its_files(cli):
    text = ok(cli("models", "info", "GatedOrg/Gated-GGUF")).stdout
    assert "license llama3, gated" in text.splitlines()[0]
    assert "Q4_0" in quant_rows(text)


# -- download ------------------------------------------------------------------------------------
def test_download_verifies_into_the_hf_cache_and_a_second_run_fetches_nothing(cli, populated_hub):
    out = ok(cli("models", "download", BIG, "--quant", "Q8_0"))
    progress = out.stderr.strip().splitlines()[-1]
    assert progress.startswith("Big-Q8_0.gguf") and "100%" in progress and progress.rstrip().endswith(
        "done, verified")
    path = Path(out.stdout.strip())
    commit = populated_hub.repos[BIG].commit
    assert path == cli.repo_dir(BIG) / "snapshots" / commit / "Big-Q8_0.gguf"
    assert path.is_symlink() and path.resolve().parent == (cli.repo_dir(BIG) / "blobs").resolve()
    expected = populated_hub.repos[BIG].files["Big-Q8_0.gguf"]
    assert path.resolve().name == expected.sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected.sha256
    assert (cli.repo_dir(BIG) / "refs" / "main").read_text().strip() == commit
    assert len(populated_hub.file_requests("Big-Q8_0.gguf")) == 1

    start = time.monotonic()
    again = ok(cli("models", "download", BIG, "--quant", "q8_0"))  # the quant name in any case
    assert again.stdout.strip() == str(path)
    assert again.stderr.rstrip().endswith("done, verified")
    assert time.monotonic() - start < 15
    assert len(populated_hub.file_requests("Big-Q8_0.gguf")) == 1  # not fetched again


def test_download_errors_are_messages(cli):
    err = failed(cli("models", "download", BIG, "--quant", "Q9_9"))
    assert "error: SmolOrg/Big-GGUF has no Q9_9 quantization (it has: Q4_K_M, Q8_0)." in err

    err = failed(cli("models", "download", "GatedOrg/Gated-GGUF"))
    assert "GatedOrg/Gated-GGUF is a gated model" in err
    assert f"{cli.env['HF_ENDPOINT']}/GatedOrg/Gated-GGUF" in err  # the page where the terms are accepted

    err = failed(cli("models", "download", "SmolOrg/No-Such-Model"))
    assert "There is no model SmolOrg/No-Such-Model on the Hub" in err and "Check the name" in err
    assert not list(cli.cache.glob("models--*/snapshots/*/*"))  # nothing was downloaded


def test_ctrl_c_pauses_a_download_and_the_same_command_resumes_it(cli, populated_hub):
    name = "Big-Q8_0.gguf"
    size = populated_hub.repos[BIG].files[name].size
    populated_hub.faults.slow[name] = 150_000  # bytes per second: 6 s for the file
    proc = cli.popen("models", "download", BIG, "--quant", "Q8_0")
    blobs = cli.repo_dir(BIG) / "blobs"
    try:
        deadline = time.monotonic() + 30
        partial = None
        while time.monotonic() < deadline:
            partial = next(blobs.glob("*.incomplete"), None) if blobs.is_dir() else None
            if partial is not None and partial.stat().st_size >= 100_000:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            raise AssertionError("the download did not start")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Paused. Run the same command again to resume." in stderr and "Traceback" not in stderr
    assert stdout == ""
    kept = partial.stat().st_size
    assert 100_000 <= kept < size  # the partial bytes stay for the resume
    assert not (cli.repo_dir(BIG) / "snapshots").exists() or not list((cli.repo_dir(BIG) / "snapshots").rglob(name))

    del populated_hub.faults.slow[name]
    out = ok(cli("models", "download", BIG, "--quant", "Q8_0"))
    assert out.stderr.rstrip().endswith("done, verified")
    resumed = populated_hub.file_requests(name)[-1]
    assert resumed["range"] is not None and resumed["range"].startswith("bytes=")
    assert int(resumed["range"][6:].split("-")[0]) >= kept > 0  # continued, not started over
    path = Path(out.stdout.strip())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == populated_hub.repos[BIG].files[name].sha256
    assert not list(blobs.glob("*.incomplete"))


# -- list / delete -------------------------------------------------------------------------------
def test_list_shows_a_download_with_its_facts_and_delete_frees_it(cli):
    # No --quant: the recommended one (the real model, so its GGUF facts can be read).
    path = Path(ok(cli("models", "download", GGUF_REPO, timeout=120)).stdout.strip())
    assert path.name == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    model_id = f"hf:{GGUF_REPO}/SmolLM2-135M-Instruct-Q4_K_M.gguf"

    for args in (("models",), ("models", "list")):
        listed = ok(cli(*args))
        line = next(line for line in listed.stdout.splitlines() if line.startswith(model_id))
        assert line.split()[1:] == ["GGUF", "98", "MB", "llama", "135M", *line.split()[6:7], "8192", "yes",
                                    "hf-cache"]
        assert listed.stdout.splitlines()[0].split() == ["ID", "FORMAT", "SIZE", "ARCH", "PARAMS", "QUANT",
                                                         "CONTEXT", "TEMPLATE", "SOURCE"]
        assert "warning" not in listed.stderr
    entry = next(m for m in json.loads(ok(cli("models", "list", "--json")).stdout) if m["id"] == model_id)
    assert entry["path"] == str(path) and entry["source"] == "hf-cache"

    err = failed(cli("models", "delete", model_id))  # no --yes, and stdin is not a terminal
    assert "needs confirmation" in err and "--yes" in err
    assert path.exists()

    err = failed(cli("models", "delete", "bundled:SmolLM2-135M-Instruct"))  # refused before any question
    assert "part of the app, so it cannot be deleted" in err and "--yes" not in err
    err = failed(cli("models", "delete", "bundled:SmolLM2-135M-Instruct", "--yes"))
    assert "part of the app, so it cannot be deleted" in err

    out = ok(cli("models", "delete", model_id, "--yes"))
    assert out.stdout.strip() == f"Deleted {GGUF_REPO} · SmolLM2-135M-Instruct-Q4_K_M.gguf: 98 MB freed."
    assert not path.exists() and not cli.repo_dir(GGUF_REPO).exists()
    assert model_id not in ok(cli("models")).stdout
