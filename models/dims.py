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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    layers: PositiveInt = Field(le=10_000)
    hidden: PositiveInt = Field(le=1_000_000)
    heads: PositiveInt = Field(le=100_000)
    kv_heads: Optional[PositiveInt] = Field(
        None, le=100_000, description="Key/value heads (GQA; 1 = multi-query); default = heads."
    )
    ffn_hidden: Optional[PositiveInt] = Field(None, le=10_000_000, description="MLP inner size; default 4*hidden.")
    gated_mlp: bool = Field(False, description="SwiGLU-style MLP with three matrices.")
    vocab: PositiveInt = Field(le=100_000_000)
    seq_len: PositiveInt = Field(le=100_000_000)
    tied_embeddings: bool = Field(False, description="Input embedding shared with the output head.")

    # --- Architecture variants -------------------------------------------------------
    head_dim_given: Optional[PositiveInt] = Field(
        None, alias="head_dim", description="Width of one attention head; default hidden/heads (Gemma, gpt-oss set it apart)."
    )
    parallel_block: bool = Field(
        False, description="Attention and MLP read the same input and are summed (PaLM, GPT-J): one TP reduction per block."
    )
    sliding_window: Optional[PositiveInt] = Field(
        None, description="Tokens a query attends to in the sliding-window layers (null = none)."
    )
    sliding_window_layers: int = Field(
        0, ge=0, description="How many of the layers use the sliding window (the others attend to the whole context)."
    )
    vocab_multiple: PositiveInt = Field(
        1, description="Pad the vocabulary to a multiple of this (Megatron pads to 128 x tp); the padded rows cost FLOPs."
    )
    # --- end architecture variants; MoE / MLA fields go in their own block below ------------------

    @model_validator(mode="after")
    def _check(self) -> "ModelDims":
        if self.head_dim_given is None and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads}), or give head_dim")
        if self.kv_heads is not None and (self.kv_heads > self.heads or self.heads % self.kv_heads):
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        if self.sliding_window_layers > self.layers:
            raise ValueError(f"sliding_window_layers ({self.sliding_window_layers}) exceeds layers ({self.layers})")
        if self.sliding_window_layers and self.sliding_window is None:
            raise ValueError("sliding_window_layers is set but sliding_window (tokens) is not")
        return self

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def ffn(self) -> int:
        return self.ffn_hidden or 4 * self.hidden

    @property
    def head_dim(self) -> int:
        """Width of one attention head (given, or hidden/heads)."""
        return self.head_dim_given or self.hidden // self.heads

    @property
    def head_size(self) -> int:
        return self.head_dim

    @property
    def attn_width(self) -> int:
        """Query width heads*head_size (= hidden unless head_dim is set apart)."""
        return self.heads * self.head_size

    @property
    def padded_vocab(self) -> int:
        m = self.vocab_multiple
        return -(-self.vocab // m) * m

    @property
    def mean_attended_keys(self) -> float:
        """Keys per query averaged over layers under a causal mask (s/2 full; ~w for a window w << s)."""
        s = float(self.seq_len)
        full = (s + 1.0) / 2.0
        if not self.sliding_window_layers:
            return full
        w = min(float(self.sliding_window), s)
        win = w - w * (w - 1.0) / (2.0 * s)  # first w queries see fewer than w keys
        n = self.sliding_window_layers
        return ((self.layers - n) * full + n * win) / self.layers

    @property
    def params_per_layer(self) -> float:
        h, hd = self.hidden, self.head_size
        attn = 2 * h * self.heads * hd + 2 * h * self.n_kv_heads * hd  # Q, O and K, V projections
        mlp = (3 if self.gated_mlp else 2) * h * self.ffn
        return float(attn + mlp)

    @property
    def embedding_params(self) -> float:
        return float(self.padded_vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @property
    def params(self) -> float:
        return self.layers * self.params_per_layer + self.embedding_params
