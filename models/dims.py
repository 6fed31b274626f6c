"""A decoder-only transformer by its dimensions, and the parameter counts derived from them."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelDims(Strict):
    """A decoder-only transformer by its dimensions."""

    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: Optional[PositiveInt] = Field(None, description="Key/value heads (GQA); default = heads.")
    ffn_hidden: Optional[PositiveInt] = Field(None, description="MLP inner size; default 4*hidden.")
    gated_mlp: bool = Field(False, description="SwiGLU-style MLP with three matrices.")
    vocab: PositiveInt
    seq_len: PositiveInt
    tied_embeddings: bool = Field(False, description="Input embedding shared with the output head.")

    @model_validator(mode="after")
    def _check(self) -> "ModelDims":
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.kv_heads is not None and (self.kv_heads > self.heads or self.heads % self.kv_heads):
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        return self

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def ffn(self) -> int:
        return self.ffn_hidden or 4 * self.hidden

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params_per_layer(self) -> float:
        h = self.hidden
        attn = 2 * h * h + 2 * h * self.n_kv_heads * self.head_dim  # Q, O and K, V projections
        mlp = (3 if self.gated_mlp else 2) * h * self.ffn
        return float(attn + mlp)

    @property
    def embedding_params(self) -> float:
        return float(self.vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @property
    def params(self) -> float:
        return self.layers * self.params_per_layer + self.embedding_params
