"""Transformer architectures and the counts that follow from them:
parameters (total, active, embedding), FLOPs per token, KV-cache bytes.

The catalog lives in ``data/models.yaml``; users add architectures from a
YAML file (top-level ``models:``) or from CLI flags. Everything here is pure
arithmetic on the architecture: no hardware, no time.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workloads.errors import InputError, unknown_name

BYTES_PER_PARAM = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp6": 0.75, "fp4": 0.5625}
"""Storage bytes per weight. fp4 counts NVFP4's one 8-bit scale per 16 values (4.5 bits)."""


class ModelSpec(BaseModel):
    """A decoder-only transformer (dense, MoE, GQA, MLA)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: Optional[int] = Field(default=None, gt=0)
    head_dim: Optional[int] = Field(default=None, gt=0)
    ffn: int = Field(gt=0)
    gated: bool = True
    vocab: int = Field(gt=0)
    max_seq: int = Field(default=4096, gt=0)
    tied_embeddings: bool = False
    # mixture of experts
    experts: int = Field(default=0, ge=0)
    active_experts: int = Field(default=0, ge=0)
    shared_experts: int = Field(default=0, ge=0)
    expert_ffn: Optional[int] = Field(default=None, gt=0)
    dense_layers: int = Field(default=0, ge=0)
    # multi-head latent attention
    q_lora_rank: Optional[int] = Field(default=None, gt=0)
    kv_lora_rank: Optional[int] = Field(default=None, gt=0)
    qk_nope_dim: Optional[int] = Field(default=None, gt=0)
    qk_rope_dim: Optional[int] = Field(default=None, gt=0)
    v_head_dim: Optional[int] = Field(default=None, gt=0)
    aliases: tuple[str, ...] = ()
    source: str = "user"

    @model_validator(mode="after")
    def _check(self):
        kv = self.kv_heads or self.heads
        if self.heads % kv:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({kv})")
        if self.experts:
            if not 0 < self.active_experts <= self.experts:
                raise ValueError("active_experts must be between 1 and experts")
            if self.dense_layers > self.layers:
                raise ValueError("dense_layers cannot exceed layers")
        elif self.active_experts or self.shared_experts:
            raise ValueError("active_experts/shared_experts need experts > 0")
        if self.kv_lora_rank and not (self.qk_rope_dim and self.qk_nope_dim and self.v_head_dim):
            raise ValueError("MLA needs kv_lora_rank, qk_nope_dim, qk_rope_dim and v_head_dim together")
        return self

    # ---- shape helpers -------------------------------------------------
    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def hd(self) -> int:
        """Head dimension of queries and keys (non-MLA)."""
        return self.head_dim or self.hidden // self.heads

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def efn(self) -> int:
        return self.expert_ffn or self.ffn

    # ---- parameters ----------------------------------------------------
    @property
    def attn_params(self) -> float:
        """Attention weights of one layer."""
        h = self.hidden
        if self.is_mla:
            qk = self.qk_nope_dim + self.qk_rope_dim
            q = h * self.q_lora_rank + self.q_lora_rank * self.heads * qk if self.q_lora_rank else h * self.heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank * self.heads * (self.qk_nope_dim + self.v_head_dim)
            o = self.heads * self.v_head_dim * h
            return float(q + kv + o)
        return float(h * self.heads * self.hd * 2 + h * self.kv * self.hd * 2)

    def _mlp(self, inner: int) -> float:
        return float((3 if self.gated else 2) * self.hidden * inner)

    @property
    def dense_mlp_params(self) -> float:
        return self._mlp(self.ffn)

    @property
    def expert_params(self) -> float:
        """One routed expert's weights."""
        return self._mlp(self.efn)

    @property
    def embedding_params(self) -> float:
        return float(self.vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @property
    def params_total(self) -> float:
        dense = self.layers - self.moe_layers
        moe = self.moe_layers * ((self.experts + self.shared_experts) * self.expert_params + self.hidden * self.experts)
        return self.layers * self.attn_params + dense * self.dense_mlp_params + moe + self.embedding_params

    @property
    def params_active(self) -> float:
        """Weights touched by one token (all of a dense model)."""
        if not self.is_moe:
            return self.params_total
        dense = self.layers - self.moe_layers
        moe = self.moe_layers * ((self.active_experts + self.shared_experts) * self.expert_params + self.hidden * self.experts)
        return self.layers * self.attn_params + dense * self.dense_mlp_params + moe + self.embedding_params

    @property
    def params_matmul_active(self) -> float:
        """Active weights used in matrix multiplies per token: the input
        embedding is a lookup, the output projection is a GEMM."""
        return self.params_active - self.vocab * self.hidden * (0 if self.tied_embeddings else 1)

    # ---- FLOPs -----------------------------------------------------------
    @property
    def attn_qk_dim(self) -> int:
        return (self.qk_nope_dim + self.qk_rope_dim) if self.is_mla else self.hd

    @property
    def attn_v_dim(self) -> int:
        return self.v_head_dim if self.is_mla else self.hd

    def attention_flops_per_token(self, context: float) -> float:
        """Forward FLOPs of score and value products for one query token
        attending to `context` keys, all layers (2 FLOPs per MAC)."""
        return 2.0 * self.layers * self.heads * (self.attn_qk_dim + self.attn_v_dim) * context

    def forward_flops_per_token(self, context: float = 0.0) -> float:
        """Forward FLOPs of one token: 2 x active matmul weights + attention
        over `context` keys (use seq/2 for the causal average in training)."""
        return 2.0 * self.params_matmul_active + self.attention_flops_per_token(context)

    # ---- KV cache --------------------------------------------------------
    def kv_bytes_per_token(self, bytes_per_value: float = 2.0) -> float:
        """KV-cache bytes one token keeps, all layers. MLA caches the
        compressed latent plus the rope key instead of full K and V."""
        if self.is_mla:
            per_layer = self.kv_lora_rank + self.qk_rope_dim
        else:
            per_layer = 2 * self.kv * self.hd
        return float(self.layers * per_layer * bytes_per_value)


@lru_cache(maxsize=1)
def _shipped() -> dict[str, ModelSpec]:
    text = (resources.files("workloads") / "data" / "models.yaml").read_text(encoding="utf-8")
    return _build_all(yaml.safe_load(text), "workloads/data/models.yaml")


def _build_all(data: dict, origin: str, base: dict[str, ModelSpec] | None = None) -> dict[str, ModelSpec]:
    table = dict(base or {})
    for name, entry in (data or {}).items():
        table[str(name)] = build_model(str(name), entry, table.get(str(name)), f"{origin}: models.{name}")
    return table


def build_model(name: str, fields: dict, base: ModelSpec | None = None, where: str = "model") -> ModelSpec:
    """A ModelSpec from a mapping of fields (merged over `base` if given)."""
    if not isinstance(fields, dict):
        raise InputError(f"model {name!r} must be a mapping of fields", where, "write name: {layers: ..., hidden: ...}")
    values = base.model_dump() if base is not None else {}
    values.update(fields)
    values["name"] = name
    if "aliases" in values and values["aliases"] is not None:
        values["aliases"] = tuple(values["aliases"])
    try:
        return ModelSpec(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        if err["type"] == "missing":
            raise InputError(f"model {name!r} is missing field {loc!r}", where, f"add '{loc}:'") from None
        if err["type"] == "extra_forbidden":
            known = [k for k in ModelSpec.model_fields if k != "name"]
            raise unknown_name("model field", loc, known, where) from None
        raise InputError(err["msg"].removeprefix("Value error, "), f"{where}.{loc}" if loc else where, "fix the value") from None


class ModelCatalog:
    """Models by name and alias."""

    def __init__(self, models: dict[str, ModelSpec]):
        self.models = models
        self._index = {}
        for m in models.values():
            self._index[m.name] = m
            for a in m.aliases:
                self._index[a] = m

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def get(self, name: str, where: str = "model") -> ModelSpec:
        try:
            return self._index[name]
        except KeyError:
            raise unknown_name("model", name, self._index, where) from None

    def names(self) -> list[str]:
        return list(self.models)


def load_models(user: dict | None = None, origin: str = "catalog") -> ModelCatalog:
    """The shipped models plus a user's (the ``models:`` section of a catalog file)."""
    models = _shipped()
    if user and user.get("models"):
        if not isinstance(user["models"], dict):
            raise InputError("catalog section 'models' must map names to entries", origin, "write 'models:' then 'name: {layers: ...}'")
        models = _build_all(user["models"], origin, models)
    return ModelCatalog(models)
