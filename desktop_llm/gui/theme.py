"""Light and dark looks: the Fusion style with a full palette, and "system" following the OS live.

Fusion draws every widget from the palette, so one palette gives the same readable look on
Linux, Windows and macOS (native styles ignore parts of a custom palette).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from desktop_llm.core.errors import InvalidRequest
from desktop_llm.core.settings import FONT_RANGE, THEMES

Role = QPalette.ColorRole
Group = QPalette.ColorGroup

# (role, normal colour, disabled colour or None for the same)
_DARK: list[tuple[QPalette.ColorRole, str, str | None]] = [
    # Fields a shade lighter than the window: Fusion outlines them with a darker window colour,
    # which would vanish against a field darker than the window.
    (Role.Window, "#1e1e1e", None),
    (Role.WindowText, "#e0e0e0", "#6f6f6f"),
    (Role.Base, "#262627", "#202021"),
    (Role.AlternateBase, "#2c2c2e", None),
    (Role.ToolTipBase, "#2d2d30", None),
    (Role.ToolTipText, "#e0e0e0", None),
    (Role.PlaceholderText, "#8c8c8c", "#5f5f5f"),
    (Role.Text, "#e0e0e0", "#6f6f6f"),
    (Role.Button, "#333337", "#2b2b2e"),
    (Role.ButtonText, "#e0e0e0", "#6f6f6f"),
    (Role.BrightText, "#ff6b6b", None),
    (Role.Light, "#4a4a4f", None),
    (Role.Midlight, "#3c3c40", None),
    (Role.Mid, "#2e2e31", None),
    (Role.Dark, "#19191a", None),
    (Role.Shadow, "#000000", None),
    (Role.Highlight, "#2f7ad8", "#3a3a3d"),
    (Role.HighlightedText, "#ffffff", "#8c8c8c"),
    (Role.Accent, "#2f7ad8", "#3a3a3d"),
    (Role.Link, "#5aa7ff", "#5a6f88"),
    (Role.LinkVisited, "#c792ea", "#75637f"),
]

_LIGHT: list[tuple[QPalette.ColorRole, str, str | None]] = [
    (Role.Window, "#f5f5f5", None),
    (Role.WindowText, "#1e1e1e", "#a0a0a0"),
    (Role.Base, "#ffffff", "#f5f5f5"),
    (Role.AlternateBase, "#f3f5f8", None),
    (Role.ToolTipBase, "#ffffff", None),
    (Role.ToolTipText, "#1e1e1e", None),
    (Role.PlaceholderText, "#7a7a7a", "#b4b4b4"),
    (Role.Text, "#1e1e1e", "#a0a0a0"),
    (Role.Button, "#fbfbfb", "#f0f0f0"),
    (Role.ButtonText, "#1e1e1e", "#a0a0a0"),
    (Role.BrightText, "#c62828", None),
    (Role.Light, "#ffffff", None),
    (Role.Midlight, "#ececec", None),
    (Role.Mid, "#c4c4c4", None),
    (Role.Dark, "#9e9e9e", None),
    (Role.Shadow, "#6e6e6e", None),
    (Role.Highlight, "#1f6fd6", "#d8d8d8"),
    (Role.HighlightedText, "#ffffff", "#8a8a8a"),
    (Role.Accent, "#1f6fd6", "#d8d8d8"),
    (Role.Link, "#0b5cc4", "#7d9cc4"),
    (Role.LinkVisited, "#7a3db8", "#a58bc0"),
]


def _palette(dark: bool) -> QPalette:
    palette = QPalette()
    for role, normal, disabled in _DARK if dark else _LIGHT:
        for group in (Group.Active, Group.Inactive):
            palette.setColor(group, role, QColor(normal))
        palette.setColor(Group.Disabled, role, QColor(disabled or normal))
    return palette


class ThemeNotifier(QObject):
    """Tells views (e.g. the chat transcript's HTML) that the effective look changed."""

    changed = Signal(bool)  # is_dark


_notifier: ThemeNotifier | None = None
_theme = "system"
_dark: bool | None = None
_followed_app: QApplication | None = None


def theme_notifier() -> ThemeNotifier:
    """The one notifier; its ``changed(is_dark)`` fires whenever the effective look changes."""
    global _notifier
    if _notifier is None:
        _notifier = ThemeNotifier()
    return _notifier


def is_dark() -> bool:
    """Whether the app currently looks dark (read from the palette, so right before apply_theme too)."""
    app = QApplication.instance()
    if app is None:
        return bool(_dark)
    return app.palette().color(Role.Window).lightness() < 128


def _scheme_is_dark(scheme: Qt.ColorScheme) -> bool:
    return scheme == Qt.ColorScheme.Dark  # Unknown (no OS preference) counts as light


def apply_theme(app: QApplication, theme: str, font_size: int) -> bool:
    """Apply "system", "light" or "dark" and the font size in points; return whether the look is dark."""
    global _theme, _followed_app
    if theme not in THEMES:
        raise InvalidRequest(f"Theme must be one of {', '.join(THEMES)}, not {theme!r}.")
    lo, hi = FONT_RANGE
    if not lo <= font_size <= hi:
        raise InvalidRequest(f"Font size must be between {lo} and {hi} points, not {font_size!r}.")
    _theme = theme
    if _followed_app is not app:
        # Connected once per application: "system" keeps following the OS when it switches.
        app.styleHints().colorSchemeChanged.connect(_on_system_scheme_changed)
        _followed_app = app
    if app.style().name().lower() != "fusion":  # setStyle re-polishes every widget: only when needed
        app.setStyle("Fusion")
    font = app.font()
    if font.pointSize() != font_size:
        font.setPointSize(font_size)
        app.setFont(font)
    dark = theme == "dark" or (theme == "system" and _scheme_is_dark(app.styleHints().colorScheme()))
    _set_look(app, dark)
    return dark


def _on_system_scheme_changed(scheme: Qt.ColorScheme) -> None:
    app = QApplication.instance()
    if _theme == "system" and isinstance(app, QApplication):
        _set_look(app, _scheme_is_dark(scheme))


def _set_look(app: QApplication, dark: bool) -> None:
    global _dark
    before = is_dark() if _dark is None else _dark
    app.setPalette(_palette(dark))
    _dark = dark
    if dark != before:
        theme_notifier().changed.emit(dark)
