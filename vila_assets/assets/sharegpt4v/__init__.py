"""ShareGPT4V: the GPT-4V and Share-Captioner captions filtered by written rules (SAM-id leaks, repetitive
responses, duplicates) and recombined with mix665k into VILA's SFT file (``assets.py``)."""

import dagster as dg

from vila_assets.assets.sharegpt4v.assets import sharegpt4v_filtered

defs = dg.Definitions(assets=[sharegpt4v_filtered])
