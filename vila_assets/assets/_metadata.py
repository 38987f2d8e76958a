"""What a person reads in the UI: Markdown tables, text bars and small charts for asset metadata.

Presentation only (the core computes the numbers; this module shows them). Metadata stays small: the
event log keeps every value forever.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence

import dagster as dg
import numpy as np


def bar(n: float, most: float, width: int = 20) -> str:
    """A text bar of ``n`` relative to ``most``; a non-zero value always shows at least one block."""
    return "█" * max(1 if n else 0, round(width * n / most)) if most else ""


def table_md(header: Sequence[str], rows: Iterable[Sequence], align_right: Sequence[int] = ()) -> str:
    """A Markdown table; ``align_right`` lists column indexes to right-align (numbers)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if i in align_right else "---|" for i in range(len(header)))]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> dg.MetadataValue:
    return dg.MetadataValue.md(table_md(header, rows))


def counts_md(title: str, counts: dict[str, int], limit: int | None = None) -> str:
    """A Markdown table of counts, largest first, with bars relative to the largest; past ``limit``
    rows the rest are summed into one line."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    most = items[0][1] if items else 0
    shown = items if limit is None else items[:limit]
    rows = [(name, n, bar(n, most)) for name, n in shown]
    if len(shown) < len(items):
        rows.append((f"… {len(items) - len(shown)} more", sum(n for _, n in items[len(shown):]), ""))
    return table_md((title, "n", ""), rows, align_right=(1,))


def counts_value(title: str, counts: dict[str, int], limit: int | None = None) -> dg.MetadataValue:
    return dg.MetadataValue.md(counts_md(title, counts, limit))


def path_value(data_root, local) -> dg.MetadataValue:
    """Where ``local`` is published (its URL on a remote data root), as a path for the UI."""
    return dg.MetadataValue.path(data_root.url(local))


def number(x: float | None, digits: int = 4) -> float:
    """A float for metadata: rounded, NaN for "not defined" (Dagster metadata has no None float)."""
    return float("nan") if x is None else round(float(x), digits)


# --- histograms ------------------------------------------------------------------------------------------


def _histogram(values: Iterable[float], lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(list(values), dtype=np.float64)
    return np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))


def _bars_png(counts: np.ndarray, lo: float, hi: float, *, title: str, color: tuple[int, int, int],
              marker: tuple[float, str] | None = None) -> bytes:
    """Bars of ``counts`` over ``[lo, hi]``, 360x140 PNG bytes (a few KB); ``marker``: (x, label) drawn as a
    red vertical line."""
    from PIL import Image, ImageDraw

    w, h, pad = 360, 140, 18
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    top = max(int(counts.max()), 1) if len(counts) else 1
    bw = (w - 2 * pad) / max(len(counts), 1)
    for i, c in enumerate(counts):
        x0 = pad + i * bw
        d.rectangle((x0 + 1, h - pad - (h - 2 * pad) * c / top, x0 + bw - 1, h - pad), fill=color)
    if marker is not None:
        x, label = marker
        tx = pad + (w - 2 * pad) * (min(max(x, lo), hi) - lo) / (hi - lo)
        d.line((tx, pad / 2, tx, h - pad), fill=(200, 30, 30), width=2)
        d.text((tx + 3, 2), label, fill=(200, 30, 30))
    d.line((pad, h - pad, w - pad, h - pad), fill=(0, 0, 0))
    d.text((pad, h - pad + 3), f"{lo:.3g}", fill=(0, 0, 0))
    d.text((w - pad - 30, h - pad + 3), f"{hi:.3g}", fill=(0, 0, 0))
    d.text((pad, 2), f"{title}  max bin {top}".strip(), fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def histogram_png(values: Iterable[float], threshold: float, lo: float = -0.2, hi: float = 1.0, bins: int = 24) -> bytes:
    """A small bar chart of scores with the threshold as a red line (PNG bytes, a few KB)."""
    counts, _ = _histogram(values, lo, hi, bins)
    return _bars_png(counts, lo, hi, title="", color=(70, 110, 180), marker=(threshold, f"threshold {threshold:g}"))


def histogram_md(values: Iterable[float], threshold: float, lo: float = -0.2, hi: float = 1.0, bins: int = 12,
                 label: str = "fresh score") -> str:
    """The same distribution as a Markdown table with text bars (readable in the UI and in logs)."""
    counts, edges = _histogram(values, lo, hi, bins)
    top = max(int(counts.max()), 1) if len(counts) else 1
    rows = []
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        mark = " ← threshold" if a <= threshold < b else ""
        rows.append((f"{a:.2f}–{b:.2f}", int(c), bar(int(c), top) + mark))
    return table_md((label, "pairs", ""), rows, align_right=(1,))


def histogram_chart_md(values: Iterable[float], threshold: float) -> str:
    """Histogram as an inline PNG (a few KB) plus the same counts as a table."""
    values = list(values)
    png = base64.b64encode(histogram_png(values, threshold)).decode("ascii")
    return f"![scores](data:image/png;base64,{png})\n\n" + histogram_md(values, threshold)


def distribution_png(values: Iterable[float], title: str = "", bins: int = 20) -> bytes:
    """A small histogram of ``values`` over their own range (PNG bytes, a few KB)."""
    v = np.asarray(list(values), dtype=np.float64)
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, _ = np.histogram(v, bins=bins, range=(lo, hi))
    return _bars_png(counts, lo, hi, title=title, color=(70, 130, 90))
