"""Pretraining scaling laws: how parameters N, tokens D and compute C relate,
and what loss they buy.

- Training compute: C ~= 6 N D (forward 2ND + backward 4ND), and the fuller
  count from the architecture that adds attention's score/value products.
- Chinchilla's parametric loss L(N, D) = E + A / N^alpha + B / D^beta with the
  constants of Hoffmann et al. (2022) or of Epoch AI's refit of their data
  (Besiroglu et al. 2024).
- Compute-optimal sizes for a budget: Chinchilla's headline rule (about 20
  tokens per parameter, so C = 6 N (20 N)) or the chosen fit's closed-form
  optimum of L under C = 6 N D.
- A Llama-like architecture for a parameter count that is not in the
  catalog, so a custom-size run can be costed like a catalog model.

Pure arithmetic: no hardware, no time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from workloads.errors import InputError, unknown_name
from workloads.models import ModelSpec, build_model

TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0
"""Forward (2 FLOPs per weight per token) plus backward (4): C = 6 N D
(Kaplan et al. 2020, sec. 2.1; Hoffmann et al. 2022, sec. 3)."""

BACKWARD_OVER_FORWARD = 2.0
"""The backward pass costs twice the forward (gradients for activations and
for weights), so training is 3 forward passes per token."""

CHINCHILLA_TOKENS_PER_PARAM = 20.0
"""Hoffmann et al. 2022 headline: a compute-optimal model sees about 20
tokens per parameter (Chinchilla: 70B parameters, 1.4T tokens)."""


@dataclass(frozen=True)
class LossFit:
    """L(N, D) = E + A / N^alpha + B / D^beta (N parameters, D tokens)."""
    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, params: float, tokens: float) -> float:
        return self.E + self.A / params ** self.alpha + self.B / tokens ** self.beta

    @property
    def _g(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    @property
    def _a(self) -> float:
        """Exponent of N_opt in C: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    def optimal(self, compute: float) -> tuple[float, float]:
        """(N, D) minimising L subject to 6 N D = compute (Hoffmann et al.
        2022, eq. 4): N = G (C/6)^a, D = (C/6)^b / G, a = beta/(alpha+beta),
        b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta))."""
        c6 = compute / TRAIN_FLOPS_PER_PARAM_TOKEN
        n = self._g * c6 ** self._a
        return n, c6 / n

    def compute_for_params(self, params: float) -> float:
        """The budget whose optimum has `params` parameters (inverse of optimal)."""
        return TRAIN_FLOPS_PER_PARAM_TOKEN * (params / self._g) ** (1.0 / self._a)

    def compute_for_tokens(self, tokens: float) -> float:
        """The budget whose optimum trains on `tokens` tokens."""
        b = 1.0 - self._a
        return TRAIN_FLOPS_PER_PARAM_TOKEN * (tokens * self._g) ** (1.0 / b)


FITS = {
    "chinchilla": LossFit("chinchilla", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
                          source="Hoffmann et al. 2022, Training Compute-Optimal LLMs, eq. 10 (Approach 3)"),
    "epoch": LossFit("epoch", E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
                     source="Besiroglu et al. 2024 (Epoch AI), Chinchilla Scaling: A replication attempt, eq. 4"),
}
RULES = ("chinchilla", "fit")


PUBLISHED_PRETRAINING_TOKENS = {
    "llama2-7b": 2.0e12, "llama2-13b": 2.0e12, "llama2-70b": 2.0e12,   # Touvron et al. 2023, Table 1
    "llama3-8b": 15.0e12, "llama3-70b": 15.0e12,                        # Llama 3 model card: over 15T tokens
    "llama3-405b": 15.6e12,                                             # Llama 3 Herd of Models, sec. 3
    "gpt3-175b": 300e9,                                                 # Brown et al. 2020, Table D.1
    "deepseek-v3": 14.8e12,                                             # DeepSeek-V3 technical report, sec. 4
    "qwen3-235b-a22b": 36e12,                                           # Qwen3 technical report, sec. 3
}
"""Pretraining tokens of released base models, to state post-training
compute as a multiple of a catalog base's pretraining compute."""


def published_pretraining_flops(model: ModelSpec) -> Optional[float]:
    """Pretraining FLOPs of a released catalog model (architecture count at
    its context up to 8192), or None when its token count is unpublished."""
    tokens = PUBLISHED_PRETRAINING_TOKENS.get(model.name)
    if tokens is None:
        for alias in model.aliases:
            tokens = PUBLISHED_PRETRAINING_TOKENS.get(alias)
            if tokens is not None:
                break
    if tokens is None:
        return None
    return training_flops_full(model, tokens, min(model.max_seq, 8192))


def get_fit(name: str, where: str = "fit") -> LossFit:
    try:
        return FITS[name]
    except KeyError:
        raise unknown_name("loss fit", name, FITS, where) from None


def training_flops(params: float, tokens: float) -> float:
    """C = 6 N D."""
    return TRAIN_FLOPS_PER_PARAM_TOKEN * params * tokens


def training_flops_full(model: ModelSpec, tokens: float, seq_len: int) -> float:
    """Training FLOPs from the architecture: 3 forward passes per token, each
    2 x active matmul weights plus causal attention over seq_len/2 keys on
    average. Larger than 6 N D for long sequences, smaller for MoE (active
    weights only) and for big vocabularies (the input embedding is a lookup)."""
    fwd = model.forward_flops_per_token(seq_len / 2.0)
    return (1.0 + BACKWARD_OVER_FORWARD) * fwd * tokens


def loss(params: float, tokens: float, fit: str = "chinchilla") -> float:
    """Chinchilla's parametric loss (nats per token) for N params and D tokens."""
    _positive(params, "params")
    _positive(tokens, "tokens")
    return get_fit(fit).loss(params, tokens)


def compute_optimal(compute: float, rule: str = "chinchilla", fit: str = "chinchilla") -> tuple[float, float]:
    """(params, tokens) for a training budget of `compute` FLOPs.

    rule 'chinchilla': D = 20 N and C = 6 N D, so N = sqrt(C / 120).
    rule 'fit': the closed-form optimum of the chosen loss fit."""
    _positive(compute, "compute")
    if rule == "chinchilla":
        n = math.sqrt(compute / (TRAIN_FLOPS_PER_PARAM_TOKEN * CHINCHILLA_TOKENS_PER_PARAM))
        return n, CHINCHILLA_TOKENS_PER_PARAM * n
    if rule == "fit":
        return get_fit(fit).optimal(compute)
    raise unknown_name("rule", rule, RULES, "rule")


def optimal_tokens(params: float, rule: str = "chinchilla", fit: str = "chinchilla") -> float:
    """Compute-optimal training tokens for a model of `params` parameters."""
    _positive(params, "params")
    if rule == "chinchilla":
        return CHINCHILLA_TOKENS_PER_PARAM * params
    if rule == "fit":
        f = get_fit(fit)
        return f.compute_for_params(params) / (TRAIN_FLOPS_PER_PARAM_TOKEN * params)
    raise unknown_name("rule", rule, RULES, "rule")


def optimal_params(tokens: float, rule: str = "chinchilla", fit: str = "chinchilla") -> float:
    """Compute-optimal parameters for a run of `tokens` tokens."""
    _positive(tokens, "tokens")
    if rule == "chinchilla":
        return tokens / CHINCHILLA_TOKENS_PER_PARAM
    if rule == "fit":
        f = get_fit(fit)
        return f.compute_for_tokens(tokens) / (TRAIN_FLOPS_PER_PARAM_TOKEN * tokens)
    raise unknown_name("rule", rule, RULES, "rule")


def solve(compute: Optional[float] = None, params: Optional[float] = None, tokens: Optional[float] = None,
          rule: str = "chinchilla", fit: str = "chinchilla") -> dict:
    """Fill in a pretraining run from what is given:

    - compute alone: the compute-optimal params and tokens;
    - params alone or tokens alone: the compute-optimal other one;
    - params and tokens: the compute they cost;
    - compute with params (or tokens): the other from C = 6 N D.
    Returns {params, tokens, compute, loss, tokens_per_param, rule, fit}."""
    get_fit(fit)
    if rule not in RULES:
        raise unknown_name("rule", rule, RULES, "rule")
    for value, name in ((compute, "compute"), (params, "params"), (tokens, "tokens")):
        if value is not None:
            _positive(value, name)
    given = sum(v is not None for v in (compute, params, tokens))
    if given == 0:
        raise InputError("nothing to size", "scaling law", "give compute, params or tokens")
    if given == 3:
        raise InputError("compute, params and tokens were all given", "scaling law",
                         "give at most two of them (the third follows from C = 6 N D)")
    if compute is not None and params is None and tokens is None:
        n, d = compute_optimal(compute, rule, fit)
    elif compute is not None and params is not None:
        n, d = params, compute / (TRAIN_FLOPS_PER_PARAM_TOKEN * params)
    elif compute is not None:
        n, d = compute / (TRAIN_FLOPS_PER_PARAM_TOKEN * tokens), tokens
    elif params is not None and tokens is not None:
        n, d = params, tokens
    elif params is not None:
        n, d = params, optimal_tokens(params, rule, fit)
    else:
        n, d = optimal_params(tokens, rule, fit), tokens
    c = training_flops(n, d)
    return {"params": n, "tokens": d, "compute": c, "loss": get_fit(fit).loss(n, d),
            "tokens_per_param": d / n, "rule": rule, "fit": fit}


# ------------------------------------------------- architecture for a size
ASPECT_RATIO = 128
"""hidden / layers of the custom architecture. Llama 3 runs 8B at
4096/32 = 128, 70B at 8192/80 = 102, 405B at 16384/126 = 130; GPT-3 175B at
12288/96 = 128 (Kaplan et al. 2020 find loss flat over a wide range)."""
ASPECT_BAND = (80, 200)
"""Allowed hidden/layers for models from 1B up (Llama 3 70B has 102, Llama 2 7B 128)."""
HEAD_DIM = 128
"""Per-head width of Llama 2/3 and GPT-3 models."""
KV_HEADS = 8
"""Grouped-query attention with 8 KV heads (Llama 3 at every size)."""
FFN_OVER_HIDDEN = 3.5
"""SwiGLU inner size over hidden: Llama 3 8B and 70B (14336/4096, 28672/8192)."""
LARGE_VOCAB = 128256
"""Llama 3's vocabulary, used from LARGE_VOCAB_FROM parameters up."""
SMALL_VOCAB = 32000
"""Llama 2's vocabulary, for small models, where a 128k embedding would be
most of the weights."""
LARGE_VOCAB_FROM = 2e9
MIN_CUSTOM_PARAMS = 2e7
MAX_CUSTOM_PARAMS = 1e14


def _shape(layers: int, hidden: int, vocab: int, seq: int) -> dict:
    heads = max(1, hidden // HEAD_DIM)
    return {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": math.gcd(heads, KV_HEADS),
            "head_dim": HEAD_DIM, "ffn": max(256, int(round(FFN_OVER_HIDDEN * hidden / 256)) * 256),
            "gated": True, "vocab": vocab, "max_seq": seq}


def _params(shape: dict) -> float:
    return build_model("x", shape).params_total


def model_for_params(params: float, name: Optional[str] = None, seq_len: int = 8192) -> ModelSpec:
    """A dense Llama-like transformer with about `params` parameters.

    Shape rule: head width 128, GQA with 8 KV heads, SwiGLU with ffn = 3.5 x
    hidden, hidden/layers close to ASPECT_RATIO (128), a 128k vocabulary from
    2B parameters up (32k below). Layers come from the aspect ratio, then
    hidden (a multiple of 128) is chosen to land closest to `params`;
    the result is within a few percent of the target."""
    _positive(params, "params")
    if not MIN_CUSTOM_PARAMS <= params <= MAX_CUSTOM_PARAMS:
        raise InputError(f"cannot build an architecture for {params:.3g} parameters", "params",
                         f"give between {MIN_CUSTOM_PARAMS:.0e} and {MAX_CUSTOM_PARAMS:.0e}, or name a catalog model")
    vocab = LARGE_VOCAB if params >= LARGE_VOCAB_FROM else SMALL_VOCAB
    # continuous layers where hidden = ASPECT_RATIO x layers hits the target
    lo, hi = 1.0, 2000.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        h = ASPECT_RATIO * mid
        approx = mid * (4 * h * h + 3 * FFN_OVER_HIDDEN * h * h) + 2 * vocab * h
        lo, hi = (mid, hi) if approx < params else (lo, mid)
    # hidden in steps that keep whole groups of 8 KV heads (1024) for
    # models from 1B up, one head (128) below; layers within the
    # aspect-ratio band; pick the shape closest to the target
    step = HEAD_DIM * KV_HEADS if params >= 1e9 else HEAD_DIM
    best = None
    for layers in range(max(2, int(lo * 0.75)), int(lo * 1.35) + 2):
        for k in range(max(1, int(ASPECT_RATIO * lo * 0.6 / step)), int(ASPECT_RATIO * lo * 1.6 / step) + 2):
            hidden = k * step
            if not ASPECT_BAND[0] <= hidden / layers <= ASPECT_BAND[1] and params >= 1e9:
                continue
            shape = _shape(layers, hidden, vocab, seq_len)
            err = abs(math.log(_params(shape) / params)) + 0.01 * abs(math.log(hidden / layers / ASPECT_RATIO))
            if best is None or err < best[0]:
                best = (err, shape)
    label = name or f"custom-{_short(params)}"
    return build_model(label, dict(best[1], source="gpusim Llama-like shape rule (workloads/scaling_laws.py)"))


def _short(x: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _positive(value, name: str) -> None:
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}", name, f"give {name} > 0")
