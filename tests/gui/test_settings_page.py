"""The Settings page, driven like a user: each change goes out at once as a valid ``Settings``."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, QStandardPaths, Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QPushButton, QSpinBox

from desktop_llm.core.models import ModelRef
from desktop_llm.core.sampling import SamplingParams
from desktop_llm.core.settings import Settings
from desktop_llm.gui.settings_page import SettingsPage

OTHER = ModelRef("hf:org/tiny-GGUF/tiny.Q8_0.gguf", "org/tiny-GGUF · tiny.Q8_0.gguf", "/models/tiny.gguf",
                 "gguf", "hf-cache")
BROKEN = ModelRef("file:/models/broken.gguf", "broken.gguf", "/models/broken.gguf", "gguf", "imported",
                  error="The file is truncated.")


@pytest.fixture()
def make_page(qtbot):
    def make(settings: Settings | None = None, models: list[ModelRef] | None = None,
             devices: list[str] | None = None) -> tuple[SettingsPage, list[Settings]]:
        page = SettingsPage(settings or Settings(), models or [], devices)
        qtbot.addWidget(page)
        page.resize(700, 900)
        page.show()
        emitted: list[Settings] = []
        page.changed.connect(emitted.append)
        return page, emitted

    return make


def find(page, kind, name):
    widget = page.findChild(kind, name)
    assert widget is not None, name
    return widget


def type_into_spin(qtbot, spin, text):
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def test_choosing_dark_theme_emits_it_at_once(qtbot, make_page):
    page, emitted = make_page()
    combo = find(page, QComboBox, "themeCombo")
    assert [combo.itemText(i) for i in range(combo.count())] == ["System", "Light", "Dark"]
    with qtbot.waitSignal(page.changed, timeout=1000) as sent:
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentText() == "Light" and sent.args[0].theme == "light"
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentText() == "Dark"
    assert [s.theme for s in emitted] == ["light", "dark"]
    assert page.settings().theme == "dark"


def test_typing_a_context_size_emits_once_when_done(qtbot, make_page):
    page, emitted = make_page()
    spin = find(page, QSpinBox, "contextSizeSpin")
    type_into_spin(qtbot, spin, "8192")
    assert [s.context_size for s in emitted] == [8192]  # not 8, 81, 819 on the way
    assert spin.text() == "8192 tokens"


def test_threads_automatic_means_none(qtbot, make_page):
    page, emitted = make_page(Settings(threads=None))
    spin = find(page, QSpinBox, "threadsSpin")
    assert spin.text() == "Automatic"
    qtbot.keyClick(spin, Qt.Key.Key_Up)
    assert emitted[-1].threads == 1
    qtbot.keyClick(spin, Qt.Key.Key_Down)
    assert emitted[-1].threads is None and spin.text() == "Automatic"


def test_seed_random_means_none(qtbot, make_page):
    page, emitted = make_page()
    spin = find(page, QSpinBox, "seedSpin")
    assert spin.text() == "Random"
    type_into_spin(qtbot, spin, "42")
    assert emitted[-1].sampling == {"seed": 42} and emitted[-1].sampling_params().seed == 42
    type_into_spin(qtbot, spin, "ran")  # the start of the word is enough
    assert spin.text() == "Random"
    assert emitted[-1].sampling == {} and emitted[-1].sampling_params().seed is None


def test_gpu_layers_all_is_minus_one(qtbot, make_page):
    page, emitted = make_page(Settings(gpu_layers=8))
    spin = find(page, QSpinBox, "gpuLayersSpin")
    type_into_spin(qtbot, spin, "All")
    assert spin.text() == "All" and emitted[-1].gpu_layers == -1
    assert emitted[-1].load_options("llamacpp")["n_gpu_layers"] == -1


def test_sampling_defaults_store_only_what_differs(qtbot, make_page):
    page, emitted = make_page()
    temperature = page.findChild(type(page.temperature_spin), "temperatureSpin")
    type_into_spin(qtbot, temperature, "0.3")
    assert emitted[-1].sampling == {"temperature": 0.3}
    assert emitted[-1].sampling_params() == SamplingParams(temperature=0.3)
    type_into_spin(qtbot, temperature, "0.8")  # back to the default: nothing to store
    assert emitted[-1].sampling == {}


def test_system_prompt_is_sent_when_typing_pauses(qtbot, make_page):
    page, emitted = make_page()
    edit = page.system_prompt_edit
    assert edit.objectName() == "systemPromptEdit"
    with qtbot.waitSignal(page.changed, timeout=3000):
        qtbot.keyClicks(edit, "Answer in French.")
    assert [s.system_prompt for s in emitted] == ["Answer in French."]  # one change, not one per key


def test_restore_defaults_clears_new_chat_values(qtbot, make_page):
    page, emitted = make_page(Settings(system_prompt="Be brief.", sampling={"top_k": 5}, theme="dark"))
    assert find(page, QSpinBox, "topKSpin").value() == 5
    qtbot.mouseClick(find(page, QPushButton, "resetNewChatButton"), Qt.MouseButton.LeftButton)
    assert emitted[-1] == Settings(theme="dark")
    assert page.system_prompt_edit.toPlainText() == "" and find(page, QSpinBox, "topKSpin").value() == 40
    assert len(emitted) == 1


def test_set_models_fills_the_default_model_list_without_a_change(qtbot, make_page, bundled_ref):
    page, emitted = make_page(models=[])
    combo = find(page, QComboBox, "defaultModelCombo")
    assert [combo.itemText(i) for i in range(combo.count())] == ["Bundled model"]
    page.set_models([bundled_ref, OTHER, BROKEN])
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert texts[0].startswith("Bundled model (SmolLM2") and OTHER.name in texts
    assert "broken.gguf (unreadable)" in texts
    assert not combo.model().item(texts.index("broken.gguf (unreadable)")).isEnabled()
    assert emitted == [] and combo.currentIndex() == 0
    combo.setCurrentIndex(texts.index(OTHER.name))
    assert emitted[-1].default_model == OTHER.id
    combo.setCurrentIndex(0)
    assert emitted[-1].default_model is None


def test_a_saved_default_model_not_yet_listed_is_kept(qtbot, make_page):
    page, emitted = make_page(Settings(default_model=OTHER.id), models=[])
    combo = find(page, QComboBox, "defaultModelCombo")
    assert combo.currentData() == OTHER.id
    page.set_models([OTHER])
    assert combo.currentText() == OTHER.name and combo.count() == 2 and emitted == []


def test_devices_offered_are_automatic_plus_the_given_ones(qtbot, make_page):
    page, emitted = make_page(devices=["cuda", "cpu", "metal"])
    combo = find(page, QComboBox, "deviceCombo")
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cuda", "cpu"]
    combo.setCurrentIndex(2)
    assert emitted[-1].device == "cpu" and emitted[-1].load_options("torch")["device"] == "cpu"


def test_backend_choice_greys_out_what_it_does_not_use(qtbot, make_page):
    page, emitted = make_page()
    backend = find(page, QComboBox, "backendCombo")
    device, layers = find(page, QComboBox, "deviceCombo"), find(page, QSpinBox, "gpuLayersSpin")
    assert device.isEnabled() and layers.isEnabled()
    backend.setCurrentIndex(backend.findData("llamacpp"))
    assert emitted[-1].backend == "llamacpp" and not device.isEnabled() and layers.isEnabled()
    backend.setCurrentIndex(backend.findData("torch"))
    assert device.isEnabled() and not layers.isEnabled()


def test_reload_button_asks_for_a_reload(qtbot, make_page):
    page, _ = make_page()
    button = find(page, QPushButton, "reloadModelButton")
    with qtbot.waitSignal(page.reload_requested, timeout=1000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert "next time a model loads" in page.findChild(type(page.error_label), "engineHint").text()


@pytest.fixture()
def qt_user_settings_in_tmp(tmp_path):
    """Qt's file dialog saves its history in the user's QtProject.conf: keep that in tmp."""
    default = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp_path / "qt-config"))
    yield
    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, default)


def test_data_folder_change_and_default(qtbot, make_page, tmp_path, qt_user_settings_in_tmp):
    page, emitted = make_page()
    edit = page.data_folder_edit
    assert edit.objectName() == "dataFolderEdit" and edit.isReadOnly() and edit.text() == ""
    assert edit.placeholderText().startswith("Default: ")
    qtbot.mouseClick(find(page, QPushButton, "changeDataFolderButton"), Qt.MouseButton.LeftButton)
    dialog = find(page, QFileDialog, "dataFolderDialog")
    dialog.setDirectory(str(tmp_path))
    dialog.accept()
    assert emitted[-1].data_folder == str(tmp_path) and edit.text() == str(tmp_path)
    qtbot.mouseClick(find(page, QPushButton, "defaultDataFolderButton"), Qt.MouseButton.LeftButton)
    assert emitted[-1].data_folder is None and edit.text() == ""
    assert "restarting the app" in page.findChild(type(page.error_label), "dataFolderHint").text()


def test_set_settings_shows_them_without_emitting(qtbot, make_page):
    page, emitted = make_page()
    page.set_settings(Settings(theme="light", font_size=14, context_size=2048, threads=3,
                               system_prompt="Hi", sampling={"seed": 9, "min_p": 0.1}))
    assert find(page, QComboBox, "themeCombo").currentText() == "Light"
    assert find(page, QSpinBox, "fontSizeSpin").value() == 14
    assert find(page, QSpinBox, "contextSizeSpin").value() == 2048
    assert find(page, QSpinBox, "threadsSpin").value() == 3
    assert find(page, QSpinBox, "seedSpin").value() == 9
    assert page.min_p_spin.value() == pytest.approx(0.1)
    assert page.system_prompt_edit.toPlainText() == "Hi"
    qtbot.wait(800)  # past the system prompt's typing pause
    assert emitted == []


def test_out_of_range_values_cannot_be_entered(qtbot, make_page):
    page, emitted = make_page()
    type_into_spin(qtbot, find(page, QSpinBox, "contextSizeSpin"), "100")
    type_into_spin(qtbot, find(page, QSpinBox, "fontSizeSpin"), "99")
    type_into_spin(qtbot, find(page, QSpinBox, "maxTokensSpin"), "0")
    qtbot.keyClick(find(page, QSpinBox, "gpuLayersSpin"), Qt.Key.Key_Down)  # already at "All"
    for settings in emitted:
        settings.validate()
    current = page.settings()
    current.validate()
    assert current.context_size == 4096  # "100 tokens" is refused: the last good value comes back
    assert 7 <= current.font_size <= 24
    assert current.sampling_params().max_tokens >= 1 and current.gpu_layers == -1
    assert not page.error_label.isVisible()


def test_page_scrolls_in_a_small_window(qtbot, make_page):
    page, _ = make_page()
    page.resize(420, 300)
    qtbot.waitUntil(lambda: page.findChild(type(page).__mro__[1], "settingsColumn").height() > 300)
    scroll = page.findChild(type(page).__mro__[1], "settingsScroll")
    assert scroll.verticalScrollBar().maximum() > 0
