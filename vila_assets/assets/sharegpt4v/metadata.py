"""How ``sharegpt4v_filtered`` shows what each filter rule removed."""

from __future__ import annotations

import dagster as dg

from vila_assets.assets._metadata import table_md
from vila_assets.core.sharegpt4v import RULES, FilterReport


def rule_table(reports: list[FilterReport]) -> dg.MetadataValue:
    """One column per filtered file: records in, removed per rule (in the order the rules fire), kept."""
    rows = [("records in", *(r.records_in for r in reports))]
    rows += [(f"removed: {rule}", *(r.removed.get(rule, 0) for r in reports)) for rule in RULES]
    rows.append(("kept", *(f"{r.records_out} ({r.yield_:.1%})" for r in reports)))
    names = [r.source.rsplit("/", 1)[-1] for r in reports]
    return dg.MetadataValue.md(table_md(("rule", *names), rows, align_right=range(1, len(reports) + 1)))
