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
    # --- end architecture variants -----------------------------------------------------------------

    # --- Mixture of experts and multi-head latent attention -----------------------------
    # A model is MoE when `experts` > 0. Its first `dense_layers` layers (DeepSeek's
    # first_k_dense_replace) and, with `moe_layer_step` 2, every other layer after them keep a dense
    # MLP of `ffn_hidden`; the others route each token to `top_k` of `experts` routed experts plus
    # `shared_experts` always-on ones, each a (gated) MLP of `expert_ffn_hidden`.
    experts: int = Field(0, ge=0, le=100_000, description="Routed experts per MoE layer (0 = dense model).")
    top_k: int = Field(0, ge=0, description="Routed experts each token goes to.")
    shared_experts: int = Field(0, ge=0, description="Experts every token goes through (DeepSeek, Kimi, Llama 4).")
    expert_ffn_hidden: Optional[PositiveInt] = Field(None, description="MLP inner size of one expert; default ffn_hidden.")
    dense_layers: int = Field(0, ge=0, description="Leading layers with a dense MLP of ffn_hidden (first_k_dense_replace).")
    moe_layer_step: PositiveInt = Field(
        1, le=16, description="After the dense layers, every n-th layer is MoE (1: all; 2: every other, Llama 4 Maverick).")
    mtp_modules: int = Field(
        0, ge=0, description="Multi-token-prediction modules (DeepSeek-V3): one extra layer and output head each in training.")
    expert_groups: int = Field(
        0, ge=0, description="Group-limited routing: experts split into this many groups (DeepSeek-V3 n_group 8; 0 = none).")
    group_top_k: int = Field(0, ge=0, description="Groups a token may route to (DeepSeek-V3 topk_group 4).")
    expert_imbalance: float = Field(
        1.0, ge=1.0, le=16.0, description="Tokens of the busiest EP rank over the mean (dropless routing; 1 = balanced).")
    capacity_factor: Optional[float] = Field(
        None, gt=0, le=16.0, description="Token-dropping routing: each expert computes capacity_factor x its mean share "
        "(padded), replacing expert_imbalance; null = dropless.")
    # MLA (DeepSeek-V2/V3): queries and keys/values pass through low-rank latents; the KV cache keeps
    # the kv_lora_rank latent plus the shared rope key per token instead of per-head keys and values.
    q_lora_rank: Optional[PositiveInt] = Field(None, description="MLA query latent width (null: a full query projection).")
    kv_lora_rank: Optional[PositiveInt] = Field(None, description="MLA key/value latent width; set = the model uses MLA.")
    qk_nope_head_dim: Optional[PositiveInt] = Field(None, description="MLA per-head query/key width without rope.")
    qk_rope_head_dim: Optional[PositiveInt] = Field(None, description="MLA per-head rope width (the rope key is shared by heads).")
    v_head_dim: Optional[PositiveInt] = Field(None, description="MLA per-head value width.")
    # --- end MoE / MLA ------------------------------------------------------------------------------

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
        if self.experts:
            if not 1 <= self.top_k <= self.experts:
                raise ValueError(f"top_k ({self.top_k}) must be between 1 and experts ({self.experts})")
            if self.expert_groups and (self.experts % self.expert_groups or not 1 <= self.group_top_k <= self.expert_groups
                                       or self.group_top_k * (self.experts // self.expert_groups) < self.top_k):
                raise ValueError(f"expert_groups ({self.expert_groups}) must divide experts ({self.experts}) and "
                                 f"group_top_k ({self.group_top_k}) groups must hold top_k ({self.top_k}) experts")
            if self.dense_layers >= self.layers:
                raise ValueError(f"dense_layers ({self.dense_layers}) must leave MoE layers among {self.layers}")
        elif self.top_k or self.shared_experts:
            raise ValueError("top_k / shared_experts are set but experts (routed experts per MoE layer) is 0")
        mla = (self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim)
        if any(x is not None for x in mla) and any(x is None for x in mla):
            raise ValueError("MLA needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim together")
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

    # --- derived MoE / MLA quantities ----------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width (MLA: nope + rope)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.mla else self.head_size

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim if self.mla else self.head_size

    @property
    def expert_ffn(self) -> int:
        return self.expert_ffn_hidden or self.ffn

    @property
    def moe_layers(self) -> int:
        """Layers with routed experts: after the dense ones, every moe_layer_step-th (the last of each step)."""
        if not self.is_moe:
            return 0
        return (self.layers - self.dense_layers) // self.moe_layer_step

    @property
    def dense_mlp_layers(self) -> int:
        return self.layers - self.moe_layers

    @property
    def expert_params(self) -> float:
        """Parameters of one expert (a gated or plain MLP of expert_ffn)."""
        return float((3 if self.gated_mlp else 2) * self.hidden * self.expert_ffn)

    @property
    def routing_factor(self) -> float:
        """Expert work of the busiest EP rank over the balanced mean: the capacity factor (padded) or the imbalance."""
        return float(self.capacity_factor) if self.capacity_factor is not None else float(self.expert_imbalance)

    @property
    def attn_params_per_layer(self) -> float:
        h = self.hidden
        if self.mla:
            a, qk, v, kvr, rope = self.heads, self.qk_head_dim, self.v_head_dim, self.kv_lora_rank, self.qk_rope_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * a * qk if self.q_lora_rank else h * a * qk
            kv = h * (kvr + rope) + kvr * a * (self.qk_nope_head_dim + v)  # latent down, per-head up
            return float(q + kv + a * v * h)  # + output projection
        hd = self.head_size
        return float(2 * h * self.heads * hd + 2 * h * self.n_kv_heads * hd)  # Q, O and K, V projections

    @property
    def dense_mlp_params(self) -> float:
        return float((3 if self.gated_mlp else 2) * self.hidden * self.ffn)

    @property
    def moe_layer_params(self) -> float:
        """One MoE layer's MLP: all routed + shared experts and the router."""
        return (self.experts + self.shared_experts) * self.expert_params + self.hidden * self.experts

    @property
    def moe_layer_active_params(self) -> float:
        """Parameters one token passes through in an MoE layer's MLP: top_k routed + shared + router."""
        return (self.top_k + self.shared_experts) * self.expert_params + self.hidden * self.experts

    @property
    def params_per_layer(self) -> float:
        """Linear parameters one token passes through per layer, averaged over layers (= the layer's
        parameters for a dense model): the FLOP count per token."""
        if not self.is_moe:
            return self.attn_params_per_layer + self.dense_mlp_params
        mlp = self.dense_mlp_layers * self.dense_mlp_params + self.moe_layers * self.moe_layer_active_params
        return self.attn_params_per_layer + mlp / self.layers

    @property
    def stored_params_per_layer(self) -> float:
        """Parameters held per layer, averaged over layers (all experts)."""
        if not self.is_moe:
            return self.params_per_layer
        mlp = self.dense_mlp_layers * self.dense_mlp_params + self.moe_layers * self.moe_layer_params
        return self.attn_params_per_layer + mlp / self.layers

    @property
    def embedding_params(self) -> float:
        return float(self.padded_vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @property
    def params(self) -> float:
        """Total parameters (every expert; MTP modules not counted, as published totals do)."""
        return self.layers * self.stored_params_per_layer + self.embedding_params

    @property
    def active_params(self) -> float:
        """Parameters a token passes through (top_k routed + shared experts), embeddings included."""
        return self.layers * self.params_per_layer + self.embedding_params

    @property
    def kv_cache_width(self) -> int:
        """Cached elements per token per layer: MLA's latent + shared rope key, else 2 x kv heads x head dim."""
        if self.mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.n_kv_heads * self.head_size
