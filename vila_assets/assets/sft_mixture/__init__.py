"""The SFT mixture (stage 3): a manifest + VILA-style registry over mix665k, VFLAN and ShareGPT4V, rebuilt
automatically whenever a component materializes (``assets.py`` explains the automation condition)."""

import dagster as dg

from vila_assets.assets.sft_mixture.assets import sft_mixture

defs = dg.Definitions(assets=[sft_mixture])
