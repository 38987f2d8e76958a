"""The offline sample world: format-faithful sources, a fake Hugging Face hub, a hostile image web."""
