"""The Models page against the Hub look-alike on 127.0.0.1: search, pick a quantization, download,
pause, resume, cancel, load into chat; My Models; the Hub token in Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QProgressBar

from desktop_llm.core.models import list_local_models
from desktop_llm.core.units import format_bytes
from desktop_llm.gui.models_page import TAB_DOWNLOADS, TAB_LIBRARY
from tests.hub.hub_fixtures import GGUF_REPO

VALID_TOKEN = "hf_testtokenvalue123456"


@pytest.fixture()
def models_window(open_window, populated_hub, monkeypatch, tmp_path):
    """The window with the Hub look-alike as its Hub, a private HF cache, and the Models page open."""
    # A private HF cache and app home: downloads of one test are not another's models or queue.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("DESKTOP_LLM_HOME", str(tmp_path / "home"))
    win = open_window(hub_endpoint=populated_hub.url)
    win.show_page(win.models_page)
    return win


def rows(tree) -> list[list[str]]:
    return [[tree.topLevelItem(i).text(c) for c in range(tree.columnCount())] for i in range(tree.topLevelItemCount())]


def first_state(tree, column: int = 6) -> str:
    """A column of the first row ("" while the table is empty); column 6 of Downloads is the state."""
    return tree.topLevelItem(0).text(column) if tree.topLevelItemCount() else ""


def repos(tree) -> list[str]:
    """Search results as repo ids: the author column, then the model name."""
    return [f"{r[1]}/{r[0]}" for r in rows(tree)]


def search(qtbot, win, text: str) -> list[list[str]]:
    view = win.models_page.discover
    view.search_edit.setText(text)
    qtbot.keyClick(view.search_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.status.text().startswith(("Page", "No models")), timeout=15_000)
    return rows(view.results)


def pick(qtbot, win, repo_id: str) -> None:
    view = win.models_page.discover
    for i in range(view.results.topLevelItemCount()):
        if view.results.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) == repo_id:
            view.results.setCurrentItem(view.results.topLevelItem(i))
            break
    else:
        raise AssertionError(f"{repo_id} not in the results")
    qtbot.waitUntil(lambda: view.detail.detail is not None and view.detail.detail.repo_id == repo_id, timeout=15_000)
    # The fit column settles once the model's shape (read from a GGUF header) is known.
    qtbot.waitUntil(lambda: "checking" not in (view.detail.table.topLevelItem(0).text(3)
                                               if view.detail.table.topLevelItemCount() else "checking"),
                    timeout=15_000)


def test_search_filters_sorts_and_pages(qtbot, models_window):
    win = models_window
    view = win.models_page.discover
    found = search(qtbot, win, "smol")
    assert repos(view.results) == [GGUF_REPO, "SmolOrg/Big-GGUF"]  # GGUF filter on, most downloaded first
    assert found[0][2] == "5.0k" and found[0][3] == "40" and found[0][4] == "2026-10-01"
    assert found[0][5] == "apache-2.0" and found[0][6] == "open"

    view.sort_combo.setCurrentIndex(view.sort_combo.findData("recent"))
    qtbot.waitUntil(lambda: repos(view.results)[:1] == ["SmolOrg/Big-GGUF"], timeout=15_000)
    view.format_combo.setCurrentIndex(view.format_combo.findData("transformers"))
    qtbot.waitUntil(lambda: repos(view.results) == ["SmolOrg/tiny-transformers"], timeout=15_000)

    view.format_combo.setCurrentIndex(0)  # any format
    view.page_size = 2
    view.sort_combo.setCurrentIndex(view.sort_combo.findData("downloads"))
    qtbot.waitUntil(lambda: view.status.text().startswith("Page 1"), timeout=15_000)
    first = repos(view.results)
    assert len(first) == 2 and view.next_button.isEnabled() and not view.prev_button.isEnabled()
    qtbot.mouseClick(view.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.status.text().startswith("Page 2"), timeout=15_000)
    second = repos(view.results)
    assert second and not set(first) & set(second) and view.prev_button.isEnabled()

    assert search(qtbot, win, "no-such-model-anywhere") == []
    assert "No models match" in view.status.text()


def test_quantization_picker_shows_fit_and_recommends(qtbot, models_window, bundled_ref):
    win = models_window
    search(qtbot, win, "smol")
    pick(qtbot, win, GGUF_REPO)
    detail = win.models_page.discover.detail
    table = rows(detail.table)
    # Smallest first (here the fake Q8_0 and F16 files are smaller than the real Q4_K_M model).
    assert [r[0] for r in table] == ["Q2_K", "Q8_0", "F16", "Q4_K_M"]
    assert [r[1] for r in table] == ["0.2 MB", "0.6 MB", "0.8 MB", format_bytes(Path(bundled_ref.path).stat().st_size)]
    # The model is tiny: every choice fits in RAM on this machine (no GPU here).
    assert all(r[3].startswith("✓ CPU only · ") for r in table), table
    assert "CPU only: needs" in detail.fit_summary.text()  # the selected row's full sentence
    recommended = [r for r in table if r[4].startswith("★ Recommended")]
    assert [r[0] for r in recommended] == ["Q4_K_M"]  # the best quality under ~6.6 bits that fits
    assert "Small and fast." in detail.card.text()
    assert "apache-2.0" in detail.meta.text()
    assert detail.download_button.isEnabled() and recommended[0][0] in detail.download_button.text()


def test_download_verify_and_load_into_chat(qtbot, models_window, bundled_ref):
    win = models_window
    search(qtbot, win, "smol")
    pick(qtbot, win, GGUF_REPO)
    detail = win.models_page.discover.detail
    row = next(i for i in range(detail.table.topLevelItemCount()) if detail.table.topLevelItem(i).text(0) == "Q4_K_M")
    detail.table.setCurrentItem(detail.table.topLevelItem(row))
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    page = win.models_page
    assert page.tabs.currentIndex() == TAB_DOWNLOADS
    downloads = page.downloads
    qtbot.waitUntil(lambda: first_state(downloads.table) == "Done ✓ verified",
                    timeout=60_000)
    name = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert rows(downloads.table)[0][0] == name
    bar = downloads.table.itemWidget(downloads.table.topLevelItem(0), 2)
    assert isinstance(bar, QProgressBar) and bar.value() == 1000
    # A complete, verified file is a model: listed in My Models, from the Hugging Face cache.
    qtbot.waitUntil(lambda: any(name in m.name for m in page.library.models), timeout=15_000)
    downloads.table.setCurrentItem(downloads.table.topLevelItem(0))
    with qtbot.waitSignal(win.engine.loaded, timeout=60_000) as loaded:
        qtbot.mouseClick(downloads.load_button, Qt.MouseButton.LeftButton)
    assert name in loaded.args[0]["model"]["name"]
    assert win.nav.currentRow() == 0  # back in the chat, with the new model
    assert Path(loaded.args[0]["model"]["path"]).read_bytes()[:4] == b"GGUF"


def test_pause_resume_and_cancel(qtbot, models_window, populated_hub):
    win = models_window
    hub = win.hub
    fake = populated_hub
    fake.faults.slow["Big-Q8_0.gguf"] = 150_000  # bytes a second: six seconds for the file
    fake.faults.slow["Big-Q4_K_M-00001-of-00002.gguf"] = 50_000
    fake.faults.slow["Big-Q4_K_M-00002-of-00002.gguf"] = 50_000
    search(qtbot, win, "big")
    pick(qtbot, win, "SmolOrg/Big-GGUF")
    detail = win.models_page.discover.detail
    names = [r[0] for r in rows(detail.table)]
    assert names[0] == "Q4_K_M (2 files)"  # a split pair is one choice
    detail.table.setCurrentItem(detail.table.topLevelItem(names.index("Q8_0")))
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    downloads = win.models_page.downloads
    qtbot.waitUntil(lambda: first_state(downloads.table) == "Downloading", timeout=15_000)
    qtbot.waitUntil(lambda: "KB of" in rows(downloads.table)[0][3] and not rows(downloads.table)[0][3]
                    .startswith("0 B"), timeout=15_000)
    downloads.table.setCurrentItem(downloads.table.topLevelItem(0))
    qtbot.mouseClick(downloads.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rows(downloads.table)[0][6] == "Paused", timeout=5_000)
    paused_at = hub.downloads.list()[0].done
    assert 0 < paused_at < 900_000
    fake.faults.slow.pop("Big-Q8_0.gguf")
    qtbot.mouseClick(downloads.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rows(downloads.table)[0][6] == "Done ✓ verified", timeout=30_000)
    resumed = [r for r in fake.file_requests("Big-Q8_0.gguf") if r["range"]]
    assert resumed and int(resumed[-1]["range"].split("=")[1].split("-")[0]) > 0  # continued, not restarted

    # The split pair: cancel it while it runs; nothing of it is left.
    detail.table.setCurrentItem(detail.table.topLevelItem(0))
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: downloads.table.topLevelItemCount() == 3, timeout=5_000)
    split_rows = [downloads.table.topLevelItem(i) for i in (1, 2)]
    qtbot.waitUntil(lambda: any(item.text(6) == "Downloading" for item in split_rows), timeout=15_000)
    downloads.table.clearSelection()
    for item in split_rows:
        item.setSelected(True)
    qtbot.mouseClick(downloads.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: all(item.text(6) == "Cancelled" for item in split_rows), timeout=2_000)
    cache = Path(win.hub.downloads.cache_dir)
    assert not list(cache.rglob("*.incomplete"))
    assert not list(cache.rglob("Big-Q4_K_M-*.gguf"))


def test_gated_model_says_how_to_get_access_then_downloads_with_a_token(qtbot, models_window):
    win = models_window
    search(qtbot, win, "gated")
    pick(qtbot, win, "GatedOrg/Gated-GGUF")
    detail = win.models_page.discover.detail
    assert detail.gate_note.isVisible() and "Gated model" in detail.gate_note.text()
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    downloads = win.models_page.downloads
    qtbot.waitUntil(lambda: first_state(downloads.table) == "Failed", timeout=15_000)
    downloads.table.setCurrentItem(downloads.table.topLevelItem(0))
    assert "GatedOrg/Gated-GGUF" in downloads.detail.text()

    # Settings › Hub: a wrong token is refused with the reason; the right one is checked and saved, masked.
    group = win.hub_settings
    win.show_page(win.settings_page)
    group.token_edit.setText("hf_wrongtoken000000")
    qtbot.mouseClick(group.save_token_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "did not accept your token" in group.token_status.text(), timeout=15_000)
    assert "hf_wrongtoken000000" not in group.token_status.text()
    group.token_edit.setText(VALID_TOKEN)
    qtbot.mouseClick(group.save_token_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "alice" in group.token_status.text(), timeout=15_000)
    assert VALID_TOKEN not in group.token_status.text() and "3456" in group.token_status.text()
    assert group.token_edit.text() == ""

    win.show_page(win.models_page)
    qtbot.mouseClick(downloads.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rows(downloads.table)[0][6] == "Done ✓ verified", timeout=30_000)


def test_library_lists_details_and_deletes_with_confirmation(qtbot, models_window, monkeypatch):
    win = models_window
    page = win.models_page
    page.tabs.setCurrentIndex(TAB_LIBRARY)
    library = page.library
    qtbot.waitUntil(lambda: library.table.topLevelItemCount() >= 1, timeout=15_000)
    bundled = next(r for r in rows(library.table) if "bundled" in r[0])
    assert bundled[1] == "GGUF" and bundled[2] == "llama" and bundled[3] == "135M" and bundled[4] == "Q4_1"
    assert bundled[5] == "8,192" and bundled[6] == "yes" and bundled[8] == "bundled"
    assert "● loaded" in bundled[0]

    # Download the small Q2_K file, then delete it from My Models.
    search(qtbot, win, "smol")
    pick(qtbot, win, GGUF_REPO)
    detail = page.discover.detail
    detail.table.setCurrentItem(detail.table.topLevelItem(0))
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: first_state(page.downloads.table) == "Done ✓ verified",
                    timeout=30_000)
    page.tabs.setCurrentIndex(TAB_LIBRARY)
    qtbot.waitUntil(lambda: any("Q2_K" in r[0] for r in rows(library.table)), timeout=15_000)
    item = next(library.table.topLevelItem(i) for i in range(library.table.topLevelItemCount())
                if "Q2_K" in library.table.topLevelItem(i).text(0))
    library.table.setCurrentItem(item)
    # The test's Q2_K is a real header over too few bytes: listed, in red, with the reason.
    assert item.text(2) == "⚠ cannot be used" and "is cut short" in library.detail.text()
    statuses = []
    library.status.connect(statuses.append)
    qtbot.mouseClick(library.delete_button, Qt.MouseButton.LeftButton)
    box = None

    def confirm_shown() -> bool:
        nonlocal box
        box = library.findChild(QMessageBox, "confirmDelete")
        return box is not None and box.isVisible()

    qtbot.waitUntil(confirm_shown, timeout=5_000)
    assert format_bytes(200_000) in box.text()
    delete = next(b for b in box.buttons() if b.text() == "Delete")
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any("freed" in s for s in statuses), timeout=10_000)
    assert f"{format_bytes(200_000)} freed" in statuses[-1]
    qtbot.waitUntil(lambda: not any("Q2_K" in r[0] for r in rows(library.table)), timeout=10_000)
    assert not any("Q2_K" in m.name for m in list_local_models())


def test_files_tab_lists_every_file_with_its_size(qtbot, models_window):
    win = models_window
    search(qtbot, win, "big")
    pick(qtbot, win, "SmolOrg/Big-GGUF")
    detail = win.models_page.discover.detail
    assert detail.tabs.tabText(1) == "Files (4)"
    files = {r[0]: r for r in rows(detail.files)}
    assert files["Big-Q4_K_M-00002-of-00002.gguf"][1] == format_bytes(200_000)
    assert files["Big-Q8_0.gguf"][2].endswith("…")  # LFS files show their SHA-256
    assert files["README.md"][2] == "(small file, kept in git)"


def test_no_network_is_said_plainly(qtbot, models_window, populated_hub):
    win = models_window
    populated_hub.stop()
    view = win.models_page.discover
    view.search_edit.setText("smol")
    qtbot.keyClick(view.search_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.banner.isVisible(), timeout=30_000)
    assert "Cannot reach the Hub" in view.banner.text()
    assert view.results.topLevelItemCount() == 0


def test_a_paused_download_survives_a_restart_of_the_app(qtbot, models_window, open_window, populated_hub):
    win = models_window
    populated_hub.faults.slow["Big-Q8_0.gguf"] = 100_000
    search(qtbot, win, "big")
    pick(qtbot, win, "SmolOrg/Big-GGUF")
    detail = win.models_page.discover.detail
    detail.table.setCurrentItem(detail.table.topLevelItem([r[0] for r in rows(detail.table)].index("Q8_0")))
    qtbot.mouseClick(detail.download_button, Qt.MouseButton.LeftButton)
    downloads = win.models_page.downloads
    qtbot.waitUntil(lambda: first_state(downloads.table) == "Downloading", timeout=15_000)
    qtbot.waitUntil(lambda: win.hub.downloads.list()[0].done > 100_000, timeout=15_000)
    win.close()  # quitting keeps the partial file and lists the download as paused

    populated_hub.faults.slow.pop("Big-Q8_0.gguf")
    again = open_window(hub_endpoint=populated_hub.url)
    again.show_page(again.models_page)
    page = again.models_page
    qtbot.waitUntil(lambda: first_state(page.downloads.table) == "Paused",
                    timeout=15_000)
    kept = again.hub.downloads.list()[0].done
    assert kept > 100_000
    page.downloads.table.setCurrentItem(page.downloads.table.topLevelItem(0))
    qtbot.mouseClick(page.downloads.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rows(page.downloads.table)[0][6] == "Done ✓ verified", timeout=30_000)
    last = [r for r in populated_hub.file_requests("Big-Q8_0.gguf") if r["range"]][-1]
    assert int(last["range"].split("=")[1].split("-")[0]) >= kept  # continued from the kept bytes


def test_per_model_defaults_apply_when_the_model_loads(qtbot, models_window):
    win = models_window
    page = win.models_page
    page.tabs.setCurrentIndex(TAB_LIBRARY)
    library = page.library
    qtbot.waitUntil(lambda: library.table.topLevelItemCount() >= 1, timeout=15_000)
    item = next(library.table.topLevelItem(i) for i in range(library.table.topLevelItemCount())
                if "bundled" in library.table.topLevelItem(i).text(0))
    library.table.setCurrentItem(item)
    qtbot.mouseClick(library.defaults_button, Qt.MouseButton.LeftButton)
    dialog = library.findChild(QDialog, "modelDefaultsDialog")
    qtbot.waitUntil(lambda: dialog is not None and dialog.isVisible(), timeout=5_000)
    dialog.context_box.setChecked(True)
    dialog.context.setValue(2048)
    dialog.preset.setCurrentIndex(dialog.preset.findData("Deterministic"))
    with qtbot.waitSignal(dialog.saved, timeout=5_000):
        dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Save).click()
    with qtbot.waitSignal(win.engine.loaded, timeout=60_000) as loaded:
        qtbot.mouseClick(library.load_button, Qt.MouseButton.LeftButton)
    assert loaded.args[0]["n_ctx"] == 2048
    # New chats with this model start from its preset: greedy.
    win.chat.new_chat()
    assert win.chat.chat_params().temperature == 0.0
