"""Settings › Remote providers: OpenAI-compatible endpoints (vLLM, a llama.cpp server, Ollama, a hosted
API, another copy of this app) whose models join the model picker. Keys go to the OS keyring only."""

from __future__ import annotations

import html
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_llm.core.errors import DesktopLLMError
from desktop_llm.gui.background import Background
from desktop_llm.gui.spin_boxes import int_spin

if TYPE_CHECKING:
    from desktop_llm.remote.keys import ProviderKeys
    from desktop_llm.remote.providers import Provider

_ERROR_COLOR = "#d9534f"  # readable on light and dark palettes
_OK_COLOR = "#3c9a5f"


class ProviderDialog(QDialog):
    """Add or edit one provider: name, base URL, key, timeout, and whether to send llama.cpp-style fields."""

    def __init__(self, provider: Provider | None, has_key: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit remote provider" if provider else "Add remote provider")
        self.name_edit = QLineEdit(provider.name if provider else "")
        self.name_edit.setObjectName("providerName")
        self.name_edit.setPlaceholderText("My vLLM server")
        self.url_edit = QLineEdit(provider.base_url if provider else "")
        self.url_edit.setObjectName("providerUrl")
        self.url_edit.setPlaceholderText("http://192.168.1.20:8000/v1")
        self.key_edit = QLineEdit()
        self.key_edit.setObjectName("providerKey")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("a key is set; type to replace it" if has_key else "none (leave empty if "
                                         "the server needs no key)")
        self.clear_key = QCheckBox("Remove the saved key")
        self.clear_key.setVisible(has_key)
        self.timeout_spin = int_spin("providerTimeout", 1, 3600, "How long to wait for the next byte before "
                                     "giving up on the endpoint.", suffix=" s")
        self.timeout_spin.setValue(int(provider.timeout_seconds) if provider else 60)
        self.extensions = QCheckBox("Also send llama.cpp-style sampling fields (top-k, min-p, repeat penalty, "
                                    "grammar)")
        self.extensions.setChecked(provider.sampling_extensions if provider else True)
        self.extensions.setToolTip("On for llama.cpp, vLLM, Ollama and this app's server. Off for strict hosted "
                                   "APIs, which refuse fields they do not know.")
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Base URL", self.url_edit)
        form.addRow("API key", self.key_edit)
        form.addRow("", self.clear_key)
        form.addRow("Timeout", self.timeout_spin)
        form.addRow("", self.extensions)
        hint = QLabel("The key is kept in the system keyring, never in a settings file. The timeout is how long "
                      "to wait for the next byte before giving up.")
        hint.setWordWrap(True)
        hint.setEnabled(False)
        self.error = QLabel("")
        self.error.setObjectName("providerError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {_ERROR_COLOR}")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())


class RemoteProvidersGroup(QGroupBox):
    """``providers_changed`` fires after a provider was added, edited or removed (the picker lists again)."""

    providers_changed = Signal()

    def __init__(self, keys: ProviderKeys | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Remote providers", parent)
        self.setObjectName("remoteProviders")
        self._keys = keys
        self._providers: list[Provider] = []
        self._network = Background(self)  # checks talk to the network: never on the disk queue
        intro = QLabel("Use models served elsewhere: a vLLM or llama.cpp server, Ollama, a hosted OpenAI-compatible "
                       "API, or this app's server on another machine. Their models appear in the model picker.")
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("providerList")
        self.list.setMaximumHeight(120)
        self.add_button = QPushButton("Add…")
        self.add_button.setObjectName("addProvider")
        self.edit_button = QPushButton("Edit…")
        self.remove_button = QPushButton("Remove")
        self.test_button = QPushButton("Test connection")
        self.test_button.setObjectName("testProvider")
        row = QHBoxLayout()
        for button in (self.add_button, self.edit_button, self.remove_button, self.test_button):
            row.addWidget(button)
        row.addStretch(1)
        self.status = QLabel("")
        self.status.setObjectName("providerStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addLayout(row)
        layout.addWidget(self.status)

        self.add_button.clicked.connect(lambda: self.edit_provider(None))
        self.edit_button.clicked.connect(lambda: self.edit_provider(self.current()))
        self.list.itemDoubleClicked.connect(lambda _item: self.edit_provider(self.current()))
        self.remove_button.clicked.connect(self.remove_current)
        self.test_button.clicked.connect(self.test_current)
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())
        self.reload()

    # -- data ---------------------------------------------------------------------------------
    @property
    def keys(self) -> ProviderKeys:
        if self._keys is None:
            from desktop_llm.remote.keys import ProviderKeys  # the keyring loads when this is first used

            self._keys = ProviderKeys()
        return self._keys

    def reload(self) -> None:
        from desktop_llm.remote.providers import load_providers

        try:
            self._providers = load_providers()
        except DesktopLLMError as exc:
            self._providers = []
            self._show(str(exc), error=True)
        self.list.clear()
        for provider in self._providers:
            item = QListWidgetItem(f"{provider.name}  —  {provider.base_url}")
            item.setData(Qt.ItemDataRole.UserRole, provider.id)
            self.list.addItem(item)
        if self._providers:
            self.list.setCurrentRow(0)
        self._update_buttons()

    def providers(self) -> list[Provider]:
        return list(self._providers)

    def current(self) -> Provider | None:
        row = self.list.currentRow()
        return self._providers[row] if 0 <= row < len(self._providers) else None

    def _update_buttons(self) -> None:
        chosen = self.current() is not None
        for button in (self.edit_button, self.remove_button, self.test_button):
            button.setEnabled(chosen)

    def _save(self, providers: list[Provider]) -> bool:
        from desktop_llm.remote.providers import save_providers

        try:
            save_providers(providers)
        except (OSError, DesktopLLMError) as exc:
            self._show(f"Could not save the providers: {exc}", error=True)
            return False
        self._providers = providers
        return True

    # -- actions ------------------------------------------------------------------------------
    def edit_provider(self, provider: Provider | None) -> Provider | None:
        """Open the add/edit dialog until it is saved or cancelled; the saved provider or None."""
        dialog = ProviderDialog(provider, bool(provider and self.keys.get(provider.id)), self)
        while dialog.exec() == QDialog.DialogCode.Accepted:
            saved = self.save_from_dialog(provider, dialog)
            if saved is not None:
                return saved
        return None

    def save_from_dialog(self, provider: Provider | None, dialog: ProviderDialog) -> Provider | None:
        """Save what ``dialog`` holds (a new provider when ``provider`` is None); on a problem, say it in the
        dialog and return None."""
        from desktop_llm.remote.providers import make_provider, normalize_base_url

        others = [p for p in self._providers if provider is None or p.id != provider.id]
        fields = {"timeout_seconds": float(dialog.timeout_spin.value()),
                  "sampling_extensions": dialog.extensions.isChecked()}
        try:
            if provider is None:
                saved = make_provider(dialog.name_edit.text(), dialog.url_edit.text(), others, **fields)
            else:
                name = dialog.name_edit.text().strip()
                if not name:
                    raise DesktopLLMError("Give the provider a name.")
                saved = replace(provider, name=name, base_url=normalize_base_url(dialog.url_edit.text()), **fields)
        except DesktopLLMError as exc:
            dialog.error.setText(str(exc))
            return None
        key = dialog.key_edit.text().strip()
        if key:
            self.keys.set(saved.id, key)
        elif dialog.clear_key.isChecked():
            self.keys.clear(saved.id)
        providers = [saved if p.id == saved.id else p for p in self._providers]
        if provider is None:
            providers.append(saved)
        if not self._save(providers):
            return None
        self.reload()
        self.list.setCurrentRow(next(i for i, p in enumerate(self._providers) if p.id == saved.id))
        self.providers_changed.emit()
        note = "" if self.keys.secure else f" {self.keys.problem}"
        self.test_current(prefix=f"Saved {saved.name}.{note} ")
        return saved

    def remove_current(self) -> None:
        provider = self.current()
        if provider is None:
            return
        if self._save([p for p in self._providers if p.id != provider.id]):
            self.keys.clear(provider.id)
            self.reload()
            self._show(f"Removed {html.escape(provider.name)} and its key.")
            self.providers_changed.emit()

    def test_current(self, prefix: str = "") -> None:
        """List the provider's models in the background; say how many, or what went wrong and what to do."""
        provider = self.current()
        if provider is None:
            return
        from desktop_llm.remote.client import RemoteClient

        key = self.keys.get(provider.id)
        self.test_button.setEnabled(False)
        self._show(f"{html.escape(prefix)}Asking {html.escape(provider.base_url)}/models …")

        def done(refs: list) -> None:
            self.test_button.setEnabled(True)
            names = ", ".join(html.escape(r.repo_id or r.name) for r in refs[:6])
            more = ", …" if len(refs) > 6 else ""
            self._show(f"{html.escape(prefix)}Connected to {html.escape(provider.name)}: {len(refs)} model"
                       f"{'' if len(refs) == 1 else 's'} ({names}{more}).", ok=True)

        def failed(exc: Exception) -> None:
            self.test_button.setEnabled(True)
            self._show(html.escape(prefix + str(exc)), error=True)

        self._network.run(lambda: RemoteClient(provider, key).list_models(timeout=min(provider.timeout_seconds,
                                                                                       15.0)), done, failed)

    def _show(self, text: str, error: bool = False, ok: bool = False) -> None:
        color = _ERROR_COLOR if error else _OK_COLOR if ok else None
        self.status.setText(f'<span style="color:{color}">{text}</span>' if color else text)
