"""Settings on disk: defaults, round trip, damaged files, validation, engine options, where files live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop_llm.core import paths
from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.settings import (
    Settings,
    load_settings,
    load_settings_reporting,
    save_settings,
    settings_path,
)


@pytest.fixture()
def file(tmp_path) -> Path:
    return tmp_path / "settings.json"


@pytest.fixture()
def platform_dirs(monkeypatch, tmp_path):
    """Point the platform's default folders (Linux XDG) into tmp so tests never touch the real ones."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def test_missing_file_gives_defaults_without_a_complaint(file):
    settings, problem = load_settings_reporting(file)
    assert settings == Settings() and problem is None
    assert settings.theme == "system" and settings.context_size == 4096 and settings.threads is None


def test_round_trip_keeps_every_value(file):
    chosen = Settings(data_folder=str(file.parent / "data"), default_model="hf:org/model/x.gguf",
                      backend="torch", device="cuda", threads=6, context_size=8192, gpu_layers=12,
                      theme="dark", font_size=13, system_prompt="Be brief.\nUse British spelling.",
                      sampling={"temperature": 0.3, "seed": 42, "max_tokens": 1000})
    save_settings(chosen, file)
    assert load_settings_reporting(file) == (chosen, None)
    assert not list(file.parent.glob(".settings-*"))  # no temp file left behind


def test_save_refuses_invalid_settings_and_leaves_the_file_alone(file):
    save_settings(Settings(theme="dark"), file)
    with pytest.raises(InvalidRequest, match="Font size"):
        save_settings(Settings(font_size=99), file)
    assert load_settings(file).theme == "dark"


def test_damaged_json_gives_defaults_a_message_and_keeps_the_file(file):
    file.write_text('{"theme": "dark", ')
    settings, problem = load_settings_reporting(file)
    assert settings == Settings()
    assert "damaged" in problem and "default settings" in problem and "settings.json.bad" in problem
    assert (file.parent / "settings.json.bad").read_text() == '{"theme": "dark", '
    # Reported once: the next start is clean.
    assert load_settings_reporting(file) == (Settings(), None)


def test_one_bad_value_falls_back_alone_and_is_named(file):
    file.write_text(json.dumps({"theme": "dark", "context_size": 10, "font_size": 12,
                                "sampling": {"temperature": -1, "top_k": 20}}))
    settings, problem = load_settings_reporting(file)
    assert settings.theme == "dark" and settings.font_size == 12
    assert settings.context_size == 4096 and settings.sampling == {"top_k": 20}
    assert "Context size must be between 256 and 131072" in problem and "temperature" in problem
    assert "defaults are used" in problem
    bad = json.loads((file.parent / "settings.json.bad").read_text())
    assert bad["context_size"] == 10  # nothing the user wrote is lost
    assert load_settings_reporting(file) == (settings, None)


def test_unknown_keys_from_a_newer_version_are_ignored(file):
    file.write_text(json.dumps({"theme": "light", "sidebar_width": 300}))
    assert load_settings_reporting(file) == (Settings(theme="light"), None)


@pytest.mark.parametrize(("change", "words"), [
    ({"context_size": 100}, "Context size must be between 256 and 131072"),
    ({"font_size": 6}, "Font size must be between 7 and 24"),
    ({"threads": 0}, "Threads must be between 1 and"),
    ({"gpu_layers": -2}, "GPU layers must be -1 (all), 0 (CPU only)"),
    ({"backend": "vllm"}, "Backend must be one of auto, llamacpp, torch"),
    ({"device": "tpu"}, "Device must be one of auto, cpu, cuda, mps"),
    ({"theme": "blue"}, "Theme must be one of system, light, dark"),
    ({"data_folder": "relative/dir"}, "Data folder must be a full path"),
    ({"sampling": {"top_p": 0}}, "top_p must be above 0"),
    ({"sampling": {"grammar": "x"}}, "'grammar' cannot be a default for new chats"),
    ({"sampling": {"max_tokens": "many"}}, "max_tokens must be a whole number"),
])
def test_validation_names_the_setting_and_the_allowed_range(change, words):
    with pytest.raises(InvalidRequest) as err:
        Settings(**change).validate()
    assert words in str(err.value)


def test_valid_edges_pass():
    Settings(context_size=256, font_size=24, threads=1, gpu_layers=0, device="cuda:1",
             sampling={"seed": None, "temperature": 0}).validate()


def test_load_options_give_each_backend_only_what_it_accepts():
    from desktop_llm.engine.backends.options import LLAMACPP_OPTIONS, TORCH_OPTIONS, check_options

    s = Settings(threads=4, context_size=2048, gpu_layers=0, device="cpu")
    assert s.load_options("llamacpp") == {"n_ctx": 2048, "n_threads": 4, "n_gpu_layers": 0}
    assert s.load_options("torch") == {"n_ctx": 2048, "n_threads": 4, "device": "cpu"}
    assert s.load_options("auto") == {"n_ctx": 2048, "n_threads": 4}
    defaults = Settings()
    assert defaults.load_options("llamacpp") == {"n_ctx": 4096, "n_gpu_layers": -1}
    assert defaults.load_options("torch") == {"n_ctx": 4096}  # automatic threads and device: not sent
    # The engine's own option check accepts them.
    all_opts = set(LLAMACPP_OPTIONS) | set(TORCH_OPTIONS)
    check_options(s.load_options("llamacpp"), LLAMACPP_OPTIONS, "llamacpp", all_opts)
    check_options(s.load_options("torch"), TORCH_OPTIONS, "torch", all_opts)
    with pytest.raises(InvalidRequest):
        s.load_options("vllm")


def test_backend_for_follows_the_engine_rule():
    assert Settings().backend_for("gguf") == "llamacpp" and Settings().backend_for("hf") == "torch"
    assert Settings(backend="torch").backend_for("gguf") == "torch"


def test_sampling_params_apply_the_new_chat_defaults():
    params = Settings(sampling={"temperature": 0.2, "seed": 7}).sampling_params()
    assert params == SamplingParams(temperature=0.2, seed=7)
    assert Settings().sampling_params() == SamplingParams()


def test_settings_live_in_the_home_folder_when_it_is_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "portable"))
    assert paths.config_dir() == tmp_path / "portable"
    assert settings_path() == tmp_path / "portable" / "settings.json"
    monkeypatch.setenv(paths.CONFIG_ENV, str(tmp_path / "conf"))
    assert settings_path() == tmp_path / "conf" / "settings.json"


def test_config_dir_defaults_to_the_platform_config_dir(monkeypatch, platform_dirs):
    from platformdirs import user_config_dir

    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    assert paths.config_dir() == Path(user_config_dir("desktop_llm", appauthor=False))


def test_app_home_uses_the_saved_data_folder_unless_the_env_overrides_it(monkeypatch, tmp_path, platform_dirs):
    monkeypatch.setenv(paths.CONFIG_ENV, str(tmp_path / "conf"))
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "env-home"))
    save_settings(Settings(data_folder=str(tmp_path / "chosen")))
    assert paths.app_home() == tmp_path / "env-home"  # the environment wins
    monkeypatch.delenv(paths.HOME_ENV)
    assert paths.app_home() == tmp_path / "chosen" and (tmp_path / "chosen").is_dir()
    assert paths.data_folder_problem() is None
    # A new choice applies after a restart, not halfway through a run.
    save_settings(Settings())
    assert paths.app_home() == tmp_path / "chosen"


def test_app_home_without_a_saved_folder_is_the_platform_default(monkeypatch, tmp_path, platform_dirs):
    monkeypatch.setenv(paths.CONFIG_ENV, str(tmp_path / "conf"))
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    assert paths.app_home() == paths.default_data_dir()


def test_an_unusable_data_folder_falls_back_to_the_default_and_says_so(monkeypatch, tmp_path,
                                                                            platform_dirs):
    monkeypatch.setenv(paths.CONFIG_ENV, str(tmp_path / "conf"))
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    save_settings(Settings(data_folder=str(blocker / "data")))
    assert paths.app_home() == paths.default_data_dir()
    problem = paths.data_folder_problem()
    assert str(blocker / "data") in problem and "default" in problem
