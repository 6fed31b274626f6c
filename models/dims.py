"""A decoder-only transformer by its dimensions, and the parameter counts derived from them."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


def _numeric(annotation) -> str | None:
    """'scalar' for a number field (int/float, maybe Optional/constrained), 'dict' for a mapping of
    numbers, None otherwise (bool fields and unions with text are not numbers)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (int, float):
        return "scalar"
    if origin is Annotated:
        return _numeric(args[0])
    if origin in (Union, UnionType):
        kinds = {_numeric(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is dict and len(args) == 2:
        return "dict" if _numeric(args[1]) == "scalar" else None
    return None


class Strict(BaseModel):
    # allow_inf_nan: inf/NaN never reach the model (the loader refuses them first, with the path).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data):
        """pydantic reads true as 1: `deadline_days: true` would be one day. A boolean where a number
        is expected is an error (the YAML loader already keeps yes/no/on/off as text)."""
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            kind, v = _numeric(field.annotation), data.get(name)
            if kind == "scalar" and isinstance(v, bool):
                raise ValueError(f"{name}: got {v}, expected a number, not a boolean")
            if kind == "dict" and isinstance(v, dict):
                for k, x in v.items():
                    if isinstance(x, bool):
                        raise ValueError(f"{name}.{k}: got {x}, expected a number, not a boolean")
        return data


class ModelDims(Strict):
    """A decoder-only transformer by its dimensions."""

    layers: PositiveInt = Field(le=10_000)
    hidden: PositiveInt = Field(le=1_000_000)
    heads: PositiveInt = Field(le=100_000)
    kv_heads: Optional[PositiveInt] = Field(None, le=100_000, description="Key/value heads (GQA); default = heads.")
    ffn_hidden: Optional[PositiveInt] = Field(None, le=10_000_000, description="MLP inner size; default 4*hidden.")
    gated_mlp: bool = Field(False, description="SwiGLU-style MLP with three matrices.")
    vocab: PositiveInt = Field(le=100_000_000)
    seq_len: PositiveInt = Field(le=100_000_000)
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
