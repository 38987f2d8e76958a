"""Small helpers the family modules share for what a person reads in the UI (Markdown tables and bars)
and for asking which checks a run selected. No dataset logic here."""

from __future__ import annotations

import dagster as dg


def bar(n: float, most: float, width: int = 20) -> str:
    """A text bar of ``n`` relative to ``most``; a non-zero value always shows at least one block."""
    return "█" * max(1 if n else 0, round(width * n / most)) if most else ""


def md_table(header: tuple[str, ...], rows: list[tuple]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def counts_md(title: str, counts: dict[str, int]) -> str:
    """A Markdown table of counts, largest first, with bars relative to the largest."""
    most = max(counts.values(), default=0)
    lines = [f"| {title} | n | |", "|---|---:|---|"]
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {name} | {n} | {bar(n, most)} |")
    return "\n".join(lines)


def check_selected(context: dg.AssetExecutionContext, name: str) -> bool:
    """Whether this run executes the asset's check ``name`` (checks declared with ``check_specs``)."""
    return dg.AssetCheckKey(context.asset_key, name) in context.selected_asset_check_keys
