"""How the LLaVA-format families show image presence in the UI."""

from __future__ import annotations

import dagster as dg

from vila_assets.assets._metadata import table_md
from vila_assets.core.llava_json import RootPresence


def presence_table(rows: list[RootPresence]) -> dg.MetadataValue:
    """Per image root: images referenced, present and missing, and whether the root folder exists."""
    return dg.MetadataValue.md(table_md(
        ("image root", "referenced", "present", "missing", "folder exists"),
        [(f"`{r.root}`", r.referenced, r.present, r.missing, "yes" if r.root_exists else "no") for r in rows],
        align_right=(1, 2, 3),
    ))
