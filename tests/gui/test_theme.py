"""Light, dark and system looks, as a user sees them: window and text colours, font size, live switching."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.gui.theme import apply_theme, is_dark, theme_notifier

Role = QPalette.ColorRole


@pytest.fixture(autouse=True)
def restore_look(qapp):
    font, palette = qapp.font(), qapp.palette()
    yield
    apply_theme(qapp, "light", font.pointSize())
    qapp.setFont(font)
    qapp.setPalette(palette)


def lightness(widget, role, group=QPalette.ColorGroup.Active):
    return widget.palette().color(group, role).lightness()


def test_dark_gives_dark_backgrounds_and_light_text(qapp, qtbot):
    label = QLabel("Hello")
    qtbot.addWidget(label)
    assert apply_theme(qapp, "dark", 10) is True and is_dark()
    qapp.processEvents()  # existing widgets pick up the new palette from the event loop
    assert lightness(label, Role.Window) < 60 and lightness(label, Role.Base) < 60
    assert lightness(label, Role.WindowText) > 200 and lightness(label, Role.Text) > 200
    # Disabled text is greyed but still visible on the background.
    disabled = lightness(label, Role.Text, QPalette.ColorGroup.Disabled)
    assert lightness(label, Role.Base) + 40 < disabled < lightness(label, Role.Text)
    assert lightness(label, Role.Link) > 120  # links readable on dark
    assert qapp.style().name().lower() == "fusion"


def test_light_gives_light_backgrounds_and_dark_text(qapp, qtbot):
    label = QLabel("Hello")
    qtbot.addWidget(label)
    assert apply_theme(qapp, "light", 10) is False and not is_dark()
    qapp.processEvents()
    assert lightness(label, Role.Window) > 230 and lightness(label, Role.Base) > 240
    assert lightness(label, Role.WindowText) < 60 and lightness(label, Role.Text) < 60
    assert lightness(label, Role.Link) < 130  # links readable on white
    highlight = label.palette().color(Role.Highlight)
    assert highlight.blue() > highlight.red() + 80  # a blue selection


def test_system_without_an_os_preference_is_light(qapp):
    if qapp.styleHints().colorScheme() != Qt.ColorScheme.Unknown:
        pytest.skip("this platform reports a colour scheme")
    assert apply_theme(qapp, "system", 10) is False


def test_font_size_applies_to_widgets(qapp, qtbot):
    label = QLabel("Hello")
    qtbot.addWidget(label)
    apply_theme(qapp, "light", 15)
    qapp.processEvents()
    assert qapp.font().pointSize() == 15 and label.font().pointSize() == 15


def test_notifier_fires_when_the_look_changes_and_not_otherwise(qapp, qtbot):
    apply_theme(qapp, "light", 10)
    seen = []
    theme_notifier().changed.connect(seen.append)
    with qtbot.waitSignal(theme_notifier().changed, timeout=1000) as fired:
        apply_theme(qapp, "dark", 10)
    assert fired.args == [True]
    apply_theme(qapp, "dark", 12)  # same look: no re-render needed
    apply_theme(qapp, "light", 12)
    assert seen == [True, False]
    theme_notifier().changed.disconnect(seen.append)


def test_system_follows_the_os_when_it_switches(qapp, qtbot):
    hints = qapp.styleHints()
    apply_theme(qapp, "system", 10)
    # The offscreen platform cannot switch its scheme, so send the signal the OS switch sends.
    with qtbot.waitSignal(theme_notifier().changed, timeout=1000) as fired:
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert fired.args == [True] and is_dark()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not is_dark()
    # A fixed choice ignores the OS.
    apply_theme(qapp, "dark", 10)
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert is_dark()


def test_unknown_theme_is_refused(qapp):
    with pytest.raises(InvalidRequest, match="system, light, dark"):
        apply_theme(qapp, "neon", 10)
