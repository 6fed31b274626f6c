"""Named model presets: published architectures by their dimensions."""

from __future__ import annotations

from .schema import ModelDims

# Sources: GPT-3 (Brown et al. 2020, Table 2.1; vocab padded to 51200 as in Megatron-LM);
# Llama 2 (Touvron et al. 2023, Table 1 and model cards); Llama 3 (Dubey et al. 2024, Table 3).
PRESETS: dict[str, ModelDims] = {
    "gpt3-175b": ModelDims(layers=96, hidden=12288, heads=96, vocab=51200, seq_len=2048, tied_embeddings=True),
    "llama2-7b": ModelDims(layers=32, hidden=4096, heads=32, ffn_hidden=11008, gated_mlp=True, vocab=32000, seq_len=4096),
    "llama2-13b": ModelDims(layers=40, hidden=5120, heads=40, ffn_hidden=13824, gated_mlp=True, vocab=32000, seq_len=4096),
    "llama2-70b": ModelDims(
        layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, gated_mlp=True, vocab=32000, seq_len=4096
    ),
    "llama3-8b": ModelDims(
        layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, gated_mlp=True, vocab=128256, seq_len=8192
    ),
    "llama3-70b": ModelDims(
        layers=80, hidden=8192, heads=64, kv_heads=8, ffn_hidden=28672, gated_mlp=True, vocab=128256, seq_len=8192
    ),
    "llama3-405b": ModelDims(
        layers=126, hidden=16384, heads=128, kv_heads=8, ffn_hidden=53248, gated_mlp=True, vocab=128256, seq_len=8192
    ),
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
