"""Named model presets: published architectures by their dimensions (data/presets.yaml, with sources)."""

from __future__ import annotations

from importlib import resources

import yaml

from .dims import ModelDims

PRESETS: dict[str, ModelDims] = {
    name: ModelDims.model_validate(spec)
    for name, spec in yaml.safe_load(resources.files("models").joinpath("data/presets.yaml").read_text()).items()
}


def resolve_model(model: str | ModelDims, seq_len: int | None = None) -> ModelDims:
    """A preset name or dimensions -> dimensions, with an optional sequence-length override."""
    if isinstance(model, str):
        if model not in PRESETS:
            raise KeyError(f"unknown model preset '{model}' (known: {', '.join(sorted(PRESETS))})")
        dims = PRESETS[model]
    else:
        dims = model
    if seq_len is not None and seq_len != dims.seq_len:
        dims = dims.model_copy(update={"seq_len": seq_len})
    return dims
