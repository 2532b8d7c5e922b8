"""Settings › Hugging Face Hub: the token (kept in the OS keyring, checked with the Hub, shown masked),
the Hub address, and how many files download at once."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
)

from desktop_llm.core.settings import PARALLEL_DOWNLOADS, Settings
from desktop_llm.gui.hub_services import HubServices
from desktop_llm.gui.spin_boxes import int_spin

_ADDRESS_DELAY_MS = 800


class HubSettingsGroup(QGroupBox):
    """``changed`` carries Settings fields to commit (hub_endpoint, parallel_downloads)."""

    changed = Signal(dict)

    def __init__(self, services: HubServices, parent=None) -> None:
        super().__init__("Hugging Face Hub", parent)
        self.setObjectName("hubSettings")
        self.services = services

        self.token_edit = QLineEdit()
        self.token_edit.setObjectName("hubToken")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (needed for gated models; read access is enough)")
        self.save_token_button = QPushButton("Check and save")
        self.save_token_button.setObjectName("saveToken")
        self.remove_token_button = QPushButton("Remove")
        self.remove_token_button.setObjectName("removeToken")
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(self.save_token_button)
        token_row.addWidget(self.remove_token_button)
        self.token_status = QLabel("")
        self.token_status.setObjectName("tokenStatus")
        self.token_status.setWordWrap(True)
        self.token_status.setTextFormat(Qt.TextFormat.RichText)
        # Expanding with height-for-width, or a form row keeps a wrapped label narrow (as Settings' hints do).
        policy = self.token_status.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Expanding)
        policy.setHeightForWidth(True)
        self.token_status.setSizePolicy(policy)

        self.address_edit = QLineEdit()
        self.address_edit.setObjectName("hubAddress")
        self.address_edit.setPlaceholderText("https://huggingface.co")
        self.address_edit.setToolTip("Leave empty for huggingface.co (or $HF_ENDPOINT); set it to use a mirror.")
        self.parallel_spin = int_spin("parallelDownloads", *PARALLEL_DOWNLOADS,
                                      "How many files download at the same time; the rest wait in the queue.")

        parallel_row = QHBoxLayout()
        parallel_row.addWidget(self.parallel_spin)
        parallel_row.addStretch(1)
        self.form = QFormLayout()  # the Settings page lines its labels up with its other groups
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.form.setHorizontalSpacing(14)
        self.form.setVerticalSpacing(8)
        self.form.addRow("Access token:", token_row)
        self.form.addRow("", self.token_status)
        self.form.addRow("Hub address:", self.address_edit)
        self.form.addRow("Downloads at once:", parallel_row)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)

        self.token_edit.returnPressed.connect(self._check_and_save)
        self.save_token_button.clicked.connect(self._check_and_save)
        self.remove_token_button.clicked.connect(self._remove)
        self.address_edit.editingFinished.connect(
            lambda: self.changed.emit({"hub_endpoint": self.address_edit.text().strip().rstrip("/")}))
        self.parallel_spin.valueChanged.connect(lambda v: self.changed.emit({"parallel_downloads": v}))
        self.show_settings(services.settings)
        self.save_token_button.setEnabled(False)
        self.token_status.setText("Reading the keyring…")
        services.ready.connect(self._on_ready)
        if services.is_ready:
            self._on_ready()

    def _on_ready(self) -> None:
        self.save_token_button.setEnabled(True)
        self._show_token()

    def show_settings(self, settings: Settings) -> None:
        for widget, value in ((self.address_edit, settings.hub_endpoint),
                              (self.parallel_spin, settings.parallel_downloads)):
            was = widget.blockSignals(True)
            if isinstance(widget, QLineEdit):
                if widget.text() != value:
                    widget.setText(value)
            else:
                widget.setValue(value)
            widget.blockSignals(was)

    def _show_token(self, user: str | None = None) -> None:
        from desktop_llm.hub.token_store import TokenStore

        store = self.services.tokens
        if store is None:
            return
        token = store.get()
        self.remove_token_button.setEnabled(token is not None)
        lines = []
        if token is None:
            lines.append("No token: public models only.")
        else:
            who = f"signed in as <b>{html.escape(user)}</b>" if user else "saved"
            where = "kept for this session only" if not store.secure else "kept in the system keyring"
            lines.append(f"Token {html.escape(TokenStore.mask(token))} {who}, {where}.")
        if store.problem:
            lines.append(f"<span style='color:#8d6e00'>{html.escape(store.problem)}</span>")
        self.token_status.setText("<br>".join(lines))

    def _check_and_save(self) -> None:
        token = self.token_edit.text().strip()
        if not token:
            self.token_status.setText("Paste a token from huggingface.co › Settings › Access Tokens first.")
            return
        self.save_token_button.setEnabled(False)
        self.token_status.setText("Checking the token with the Hub…")
        endpoint = self.services.settings.hub_url()
        def check() -> str:
            from desktop_llm.hub.client import HubClient

            return HubClient(endpoint, token).whoami()

        self.services.network.run(check, lambda user: self._saved(token, user),
                                  self._rejected)

    def _saved(self, token: str, user: str) -> None:
        self.save_token_button.setEnabled(True)
        self.token_edit.clear()  # the token leaves the widget; only the mask is shown from now on
        try:
            self.services.set_token(token)
        except Exception as exc:  # noqa: BLE001 - a keyring failure is shown, the token is not
            self.token_status.setText(f"The token is valid but could not be saved: {html.escape(str(exc))}")
            return
        self._show_token(user)

    def _rejected(self, exc: Exception) -> None:
        self.save_token_button.setEnabled(True)
        self.token_status.setText(f"<span style='color:#c62828'>{html.escape(str(exc))}</span>")

    def _remove(self) -> None:
        self.services.set_token(None)
        self._show_token()
