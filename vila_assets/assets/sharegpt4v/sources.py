"""Where ShareGPT4V comes from."""

from __future__ import annotations

import dagster as dg

CAPTIONS_REPO = "Lin-Chen/ShareGPT4V"
MIT_REPO = "mit-han-lab/ShareGPT4V"

# the files the family reads from those repos
CAP100K = "sharegpt4v_instruct_gpt4-vision_cap100k.json"  # in CAPTIONS_REPO
PT1246K = "share-captioner_coco_lcs_sam_1246k_1107.json"  # in CAPTIONS_REPO
DETAIL23K = "raw_data/llava_detail_23k.json"  # in MIT_REPO


class ShareGPT4VSource(dg.ConfigurableResource):
    """The raw captions (``Lin-Chen/ShareGPT4V``) and VILA's repo (``mit-han-lab/ShareGPT4V``, which holds
    ``llava_detail_23k``), each at a revision resolved to a sha per run."""

    captions_repo: str = CAPTIONS_REPO
    captions_revision: str = "main"
    mit_repo: str = MIT_REPO
    mit_revision: str = "main"
