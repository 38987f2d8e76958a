"""Where the LLaVA data and the SFT image roots come from."""

from __future__ import annotations

import dagster as dg

CC3M_REPO = "liuhaotian/LLaVA-CC3M-Pretrain-595K"
INSTRUCT_REPO = "liuhaotian/LLaVA-Instruct-150K"

# the files the family reads from those repos
CC3M_CHAT = "chat.json"
CC3M_IMAGES_ZIP = "images.zip"
MIX665K_FILE = "llava_v1_5_mix665k.json"
IMAGE_ROOTS_INDEX = "image_roots.json"  # {root: zip name} in an image-roots repo


class LlavaSource(dg.ConfigurableResource):
    """The CC3M-595K and LLaVA-Instruct-150K (mix665k) hub repos and their revisions; ``image_roots_repo``
    a hub dataset of per-root zips with an ``image_roots.json`` index (empty: none configured, the roots
    are only reported)."""

    cc3m_repo: str = CC3M_REPO
    cc3m_revision: str = "main"
    instruct_repo: str = INSTRUCT_REPO
    instruct_revision: str = "main"
    image_roots_repo: str = ""
    image_roots_revision: str = "main"
