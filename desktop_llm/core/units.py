"""Numbers as people read them: sizes, counts, speeds, durations, dates. One definition for GUI and CLI."""

from __future__ import annotations

from datetime import datetime


def format_bytes(size_bytes: int | float | None) -> str:
    """Disk size in decimal units, as file managers and the Hub show them: "98 MB", "4.1 GB"."""
    if size_bytes is None:
        return "?"
    n = float(size_bytes)
    if n >= 1e12:
        return f"{n / 1e12:.1f} TB"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e7:
        return f"{n / 1e6:.0f} MB"
    if n >= 1e5:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} KB"
    return f"{n:.0f} B"


def format_count(n: int | None) -> str:
    """Downloads and likes as the Hub shows them: 950, 12.3k, 4.5M."""
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def format_speed(bytes_per_second: float | None) -> str:
    return "" if not bytes_per_second else f"{format_bytes(bytes_per_second)}/s"


def format_duration(seconds: float | None) -> str:
    """A remaining time: "45 s", "3 min", "1 h 20 min"."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s < 600 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def format_date(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d") if when else ""


def parameter_count(n: int | None) -> str:
    """Model size as the field names it: "135M", "7.2B"."""
    if not n:
        return ""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{n / 1e6:.0f}M"
