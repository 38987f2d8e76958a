"""LLaVA: CC3M-595K for projector alignment, LLaVA-1.5 mix665k for SFT, and the SFT image roots (every image
folder mix665k and ShareGPT4V resolve their images against: ``image_roots.py``). ``checks.py`` also holds
the checks every published LLaVA-format JSON gets, which ShareGPT4V reuses."""

import dagster as dg

from vila_assets.assets.llava.assets import llava_cc3m_595k, llava_mix665k
from vila_assets.assets.llava.image_roots import sft_image_roots

defs = dg.Definitions(assets=[llava_cc3m_595k, llava_mix665k, sft_image_roots])
