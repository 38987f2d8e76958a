"""ShareGPT4V: VILA's SFT and PT caption files, either as ``mit-han-lab/ShareGPT4V`` publishes them (``vila``
policy) or re-derived from the raw captions by written rules (SAM-id leaks, repetitive responses, phrase
loops, duplicates) and recombined with mix665k (``curated``); ``assets.py`` lists the files it writes."""

import dagster as dg

from vila_assets.assets.sharegpt4v.assets import sharegpt4v_filtered

defs = dg.Definitions(assets=[sharegpt4v_filtered])
