"""Analytical performance model of one LLM serving replica: memory plan,
prefill and decode times, continuous batching with chunked prefill, and the
throughput/latency a replica delivers offline or under latency SLOs.

The same functions feed ``gpusim serve-estimate``, the request-level
simulator (one call per engine iteration) and the fleet mode of the cluster
engine (``replicas_needed``), so they are cached and cheap.

API
---
ServingConfig(model, gpu, system, fabric, tp=1, pp=1, ep=1, precision="fp8",
              kv_precision=None, max_batch=None, max_num_tokens=8192,
              attention_dp=False)
replica_gpus(cfg) -> int                       tp * pp
memory_plan(cfg) -> MemoryPlan                 InputError (need vs capacity) if weights do not fit
prefill_time(cfg, new_tokens, cached_context=0, seqs=1) -> s
decode_step_time(cfg, batch, context_tokens_total) -> s
iteration_time(cfg, prefill_tokens, prefill_context, decode_batch, decode_context_total) -> s
kv_transfer_time(cfg, tokens, levels) -> s
estimate(cfg, input_tokens, output_tokens, ttft_slo=None, tpot_slo=None, samples=1) -> ServingEstimate
replicas_needed(cfg, requests_per_s, input_tokens, output_tokens, ttft_slo, tpot_slo, samples=1) -> int
best_layout(model, gpu, system, fabric, gpus, precision, ...) -> ServingConfig   (search tp/pp/ep/attention_dp)

Model (all per GPU of the replica, SI units)
--------------------------------------------
One engine iteration runs every layer once over the iteration's tokens
(chunked-prefill tokens plus one token per decoding sequence). Its time is
the sum over kernel classes of a roofline (max of memory time and compute
time) each, plus communication and a fixed per-iteration overhead:

- GEMMs: max(weights touched / (HBM bw x HBM_EFFICIENCY),
  2 x active matmul params x tokens / (peak(precision) x GEMM_EFFICIENCY)).
  For MoE the weights touched are the experts the iteration's tokens route to
  (expected distinct experts of E when T tokens pick k each: E(1-(1-k/E)^T)).
- Attention: prefill is compute (score and value products over the causal
  context, at bf16 peak x ATTENTION_EFFICIENCY); decode reads every cached
  token's K and V once (KV bytes / (HBM bw x ATTENTION_HBM_EFFICIENCY)).
- Tensor parallel: two all-reduces per layer of tokens x hidden x 2 bytes
  (hardware.collectives, NVLink, in-switch reduction where available).
  Expert parallel: all-to-all dispatch and combine per MoE layer.
- Pipeline parallel: the batch is split into pp micro-batches in flight; a
  token of one sequence passes every stage (latency pp x stage time) while
  every stage works all the time (throughput of one stage).
- ITERATION_OVERHEAD_S: scheduling, sampling and launch time per iteration.

Offline throughput (all requests queued, as trtllm-bench and MLPerf offline
measure it) is the steady state of continuous batching: B sequences decode,
and B/O new requests' prompts are prefilled per decode iteration in chunks of
at most max_num_tokens. B is the largest batch the KV cache holds (each
sequence reserves its full input + output, TensorRT-LLM's
GUARANTEED_NO_EVICT policy) up to max_batch. With SLOs, B is the largest
batch whose p99 TPOT (an iteration carrying a full prefill chunk) and TTFT
(queueing plus chunked prefill) meet them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Sequence

from hardware.catalog import GPU, Fabric, System
from hardware.collectives import Level, collective_time, levels_for_group, nvlink_level
from workloads.errors import InputError
from workloads.models import BYTES_PER_PARAM, ModelSpec

# ---------------------------------------------------------------------------
# Efficiency factors (each a fraction of a datasheet peak), with sources.
# ---------------------------------------------------------------------------
HBM_EFFICIENCY = 0.85
"""Fraction of datasheet HBM bandwidth that weight-streaming GEMMs reach in
decode. Measured memory-bound kernels reach ~90% of peak on H100 (STREAM-like
copy ~3.0 of 3.35 TB/s, NVIDIA Hopper tuning guide); TensorRT-LLM low-batch
decode GEMV/GEMM kernels are reported at 80-90%."""

ATTENTION_HBM_EFFICIENCY = 0.70
"""Fraction of HBM bandwidth decode attention reaches reading a paged KV cache
(FlashInfer / TensorRT-LLM XQA report 70-80% of peak for long contexts; short
pages and GQA head grouping keep it below streaming GEMMs)."""

GEMM_EFFICIENCY = {"bf16": 0.70, "fp16": 0.70, "fp8": 0.62, "fp6": 0.55, "fp4": 0.55, "int8": 0.62}
"""Fraction of dense tensor-core peak that large inference GEMMs reach per
precision: cuBLASLt/CUTLASS BF16 GEMMs on H100 run ~700 of 989 TFLOP/s; FP8
~1,200-1,300 of 1,979 (scaling and quantisation epilogues cost more); NVFP4 on
B200 ~5,000 of 9,000 (CUTLASS Blackwell block-scaled GEMM benchmarks)."""

ATTENTION_EFFICIENCY = 0.55
"""Fraction of BF16 peak that prefill attention (FlashAttention-3 class
kernels, causal) reaches: FA3 reports 500-740 TFLOP/s of 989 on H100 for
head dim 128 (Shah et al. 2024), causal masking and short sequences lower."""

ITERATION_OVERHEAD_S = 1.5e-3
"""Per engine iteration: scheduling, sampling, host-device sync and kernel
launch gaps that CUDA graphs do not hide. TensorRT-LLM and vLLM profiles show
1-3 ms between decode steps at large batch (vLLM v0.6 'Reducing CPU
overhead' blog: scheduling + detokenisation were ~30-40% of a 3-10 ms step
before being overlapped)."""

PER_SEQUENCE_OVERHEAD_S = 1.0e-6
"""Host time per sequence per iteration (batch bookkeeping, sampling
metadata); ~1 us per request in TensorRT-LLM's C++ executor."""

MOE_IMBALANCE = 1.15
"""Expert-parallel load imbalance: the busiest GPU's share of routed tokens
over the mean. DeepSeek-V3 report / EPLB and TensorRT-LLM wide-EP notes put
the max/mean expert load at 1.1-1.3 without redundant experts."""

MEMORY_FRACTION = 0.90
"""Fraction of free GPU memory (after weights and workspace) given to the KV
cache: TensorRT-LLM's default kv_cache_free_gpu_mem_fraction = 0.9 (vLLM's
gpu_memory_utilization defaults to 0.9 too)."""

RUNTIME_RESERVED_BYTES = 2.0 * 2**30
"""CUDA context, cuBLAS/NCCL workspaces and allocator slack per GPU (~1.5-3
GiB as seen in nvidia-smi for an idle TensorRT-LLM engine)."""

EMBEDDING_PRECISION = "bf16"
"""Quantised checkpoints (NVIDIA ModelOpt FP8/NVFP4) keep the embedding and
output head in BF16."""

KV_BLOCK_TOKENS = 32
"""Tokens per paged KV-cache block (TensorRT-LLM tokens_per_block default);
a sequence reserves whole blocks."""

DEFAULT_MAX_BATCH = 2048
"""Runtime max batch when none is given (TensorRT-LLM BuildConfig default
max_batch_size = 2048)."""

ACTIVATION_BYTES = 2.0
"""Activations and all-reduce payloads travel in BF16."""

PREFILL_ATTENTION_PRECISION = "bf16"
"""Prefill attention runs on BF16 tensor cores (FP8 context FMHA is optional)."""

SERVER_LOAD_MARGIN = 0.90
"""Under latency SLOs with Poisson arrivals the offered load must stay below
the saturated rate so that queues do not grow: the p99 TTFT is met at ~90%
of the batch's service rate (M/D/c queues with c in the hundreds wait little
below ~90% load)."""

_KV_DEFAULT = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "fp6": "fp8", "fp4": "fp8", "fp32": "bf16", "tf32": "bf16"}
"""KV-cache precision when none is given: FP8 for FP8/FP4 checkpoints (ModelOpt
quantises the KV cache to FP8), otherwise the weights' precision."""

SERVING_PRECISIONS = ("bf16", "fp16", "fp8", "fp6", "fp4", "int8")


# ---------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingConfig:
    """One serving replica: a model on tp x pp GPUs of one kind.

    ep divides tp: MoE experts are spread over ep GPUs and each expert is
    tensor-split over tp/ep. attention_dp runs attention data-parallel over
    the tp GPUs (each GPU keeps whole attention weights and its own
    sequences' KV cache) while the MLP/experts stay split.
    max_num_tokens is the chunked-prefill token budget of one iteration.
    """
    model: ModelSpec
    gpu: GPU
    system: System
    fabric: Fabric
    tp: int = 1
    pp: int = 1
    ep: int = 1
    precision: str = "fp8"
    kv_precision: Optional[str] = None
    max_batch: Optional[int] = None
    max_num_tokens: int = 8192
    attention_dp: bool = False

    def __post_init__(self):
        for name in ("tp", "pp", "ep", "max_num_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {v!r}", name, f"give --{name.replace('_', '-')} 1 or more")
        if self.max_batch is not None and (not isinstance(self.max_batch, int) or self.max_batch < 1):
            raise InputError(f"max_batch must be a whole number >= 1, got {self.max_batch!r}", "max_batch", "give --max-batch 1 or more")
        if self.precision not in SERVING_PRECISIONS:
            raise InputError(f"unknown serving precision {self.precision!r}", "precision", "use one of " + ", ".join(SERVING_PRECISIONS))
        if self.kv_precision is not None and self.kv_precision not in SERVING_PRECISIONS:
            raise InputError(f"unknown KV-cache precision {self.kv_precision!r}", "kv_precision", "use one of " + ", ".join(SERVING_PRECISIONS))
        if self.tp % self.ep:
            raise InputError(f"ep ({self.ep}) must divide tp ({self.tp})", "ep",
                             "experts are spread over ep of the tp GPUs; pick ep among the divisors of tp")
        if self.ep > 1 and not self.model.is_moe:
            raise InputError(f"model {self.model.name!r} has no experts, ep must be 1", "ep", "drop --ep or pick a MoE model")
        if self.ep > 1 and self.model.experts % self.ep:
            raise InputError(f"ep ({self.ep}) must divide the {self.model.experts} experts of {self.model.name!r}", "ep",
                             "pick ep among the divisors of the expert count")
        if self.pp > self.model.layers:
            raise InputError(f"pp ({self.pp}) exceeds the model's {self.model.layers} layers", "pp", "use fewer pipeline stages")
        if self.tp > self.system.nvlink_domain_gpus:
            raise InputError(f"tp ({self.tp}) exceeds the NVLink domain of {self.system.name} ({self.system.nvlink_domain_gpus} GPUs)",
                             "tp", "keep tensor parallelism inside one NVLink domain; use pp across domains")
        self.gpu.peak_flops(self.precision)  # InputError if the GPU lacks it

    def __hash__(self):
        return hash(_key(self))

    @property
    def kv_prec(self) -> str:
        return self.kv_precision or _KV_DEFAULT[self.precision]


def _key(cfg: ServingConfig) -> tuple:
    g, m = cfg.gpu, cfg.model
    return (m.name, m.layers, m.hidden, m.heads, m.kv, m.ffn, m.experts, m.vocab, m.kv_lora_rank,
            g.name, g.hbm_gib, g.hbm_tbps, g.nvlink_gbps_bidir, tuple(sorted(g.tflops.items())),
            cfg.system.name, cfg.system.nvlink_domain_gpus, cfg.fabric.name,
            cfg.tp, cfg.pp, cfg.ep, cfg.precision, cfg.kv_precision, cfg.max_batch, cfg.max_num_tokens, cfg.attention_dp)


@dataclass(frozen=True)
class MemoryPlan:
    """Memory of one replica. Per-GPU figures are for the most loaded GPU."""
    weights_bytes_per_gpu: float
    activation_bytes_per_gpu: float
    reserved_bytes_per_gpu: float
    kv_bytes_per_token: float          # whole replica, all copies
    kv_capacity_tokens: int            # whole replica
    kv_cache_bytes: float              # whole replica, the KV pool
    memory_per_gpu_bytes: float        # weights + workspace + KV pool, per GPU
    capacity_per_gpu_bytes: float


@dataclass(frozen=True)
class ServingEstimate:
    output_tokens_per_s: float         # whole replica
    requests_per_s: float
    ttft_s: float
    tpot_s: float
    batch_size: int
    kv_cache_bytes: float              # KV in use at that batch, whole replica
    memory_per_gpu_bytes: float
    e2e_latency_s: float = 0.0
    input_tokens_per_s: float = 0.0
    iteration_s: float = 0.0
    limited_by: str = ""
    breakdown: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("output_tokens_per_s", "requests_per_s", "ttft_s", "tpot_s", "batch_size",
                                           "kv_cache_bytes", "memory_per_gpu_bytes", "e2e_latency_s",
                                           "input_tokens_per_s", "iteration_s", "limited_by")}
        d["breakdown"] = dict(self.breakdown)
        return d


def replica_gpus(cfg: ServingConfig) -> int:
    return cfg.tp * cfg.pp


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------
def _bytes(precision: str) -> float:
    return BYTES_PER_PARAM[precision]


@lru_cache(maxsize=4096)
def _weights(cfg: ServingConfig) -> tuple[float, float, float]:
    """(non-expert bytes per GPU, expert bytes per GPU, embedding+head bytes per GPU)."""
    m = cfg.model
    b = _bytes(cfg.precision)
    eb = _bytes(EMBEDDING_PRECISION)
    dense_layers = m.layers - m.moe_layers
    attn = m.layers * m.attn_params * b
    dense_mlp = dense_layers * m.dense_mlp_params * b
    router = m.moe_layers * m.hidden * m.experts * eb
    shared = m.moe_layers * m.shared_experts * m.expert_params * b
    experts = m.moe_layers * m.experts * m.expert_params * b
    embed = m.embedding_params * eb
    tp, pp = cfg.tp, cfg.pp
    attn_split = 1 if cfg.attention_dp else tp
    # MLP parts are tensor-split over tp (dense layers with attention DP stay replicated too)
    mlp_split = 1 if cfg.attention_dp else tp
    non_expert = (attn / attn_split + (dense_mlp + shared) / mlp_split + router) / pp
    expert = experts / tp / pp          # E/ep experts, each split tp/ep ways
    head = embed / (1 if cfg.attention_dp else tp) / pp if pp == 1 else embed / 2 / (1 if cfg.attention_dp else tp)
    return non_expert, expert, head


def _kv_replication(cfg: ServingConfig) -> float:
    """How many copies of each token's KV the replica keeps."""
    m = cfg.model
    if cfg.attention_dp:
        return 1.0
    if m.is_mla:
        return float(cfg.tp)            # the latent is not split across heads
    return cfg.tp / min(cfg.tp, m.kv)   # GQA: KV heads replicate when tp > kv_heads


def _activation_bytes(cfg: ServingConfig) -> float:
    """Per-GPU workspace for one iteration of max_num_tokens tokens."""
    m = cfg.model
    t = cfg.max_num_tokens
    split = 1 if cfg.attention_dp else cfg.tp
    inner = max(m.ffn, m.efn * max(1, m.active_experts)) / split
    qkv = (m.heads + 2 * m.kv) * m.attn_qk_dim / split
    per_token = (4 * m.hidden + 2 * inner + qkv) * ACTIVATION_BYTES
    logits = min(t, cfg.max_batch or DEFAULT_MAX_BATCH) * m.vocab * 4.0 / split
    return t * per_token + logits


@lru_cache(maxsize=4096)
def memory_plan(cfg: ServingConfig) -> MemoryPlan:
    non_expert, expert, head = _weights(cfg)
    weights = non_expert + expert + head
    act = _activation_bytes(cfg)
    cap = cfg.gpu.hbm_bytes
    need = weights + act + RUNTIME_RESERVED_BYTES
    if need >= cap:
        gib = 2**30
        raise InputError(
            f"{cfg.model.name} at {cfg.precision} needs {need / gib:.1f} GiB per GPU "
            f"(weights {weights / gib:.1f} + workspace {(act + RUNTIME_RESERVED_BYTES) / gib:.1f}) "
            f"but a {cfg.gpu.name} has {cap / gib:.1f} GiB",
            f"tp={cfg.tp} pp={cfg.pp} ep={cfg.ep}",
            "use more GPUs per replica (--tp/--pp), a lower --precision, or a larger GPU")
    free = (cap - need) * MEMORY_FRACTION
    gpus = replica_gpus(cfg)
    kv_tok = cfg.model.kv_bytes_per_token(_bytes(cfg.kv_prec)) * _kv_replication(cfg)
    capacity = int(free * gpus / kv_tok)
    return MemoryPlan(weights, act, RUNTIME_RESERVED_BYTES, kv_tok, capacity, free * gpus,
                      need + free, cap)


# ---------------------------------------------------------------------------
# Time of one iteration
# ---------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _nvlink_levels(cfg: ServingConfig, group: int) -> tuple[Level, ...]:
    if group <= 1:
        return ()
    return tuple(levels_for_group(cfg.system, cfg.fabric, cfg.gpu, group))


def _comm_time(cfg: ServingConfig, tokens: float) -> float:
    """Per-layer collectives of one iteration, all layers of one stage."""
    m = cfg.model
    layers = m.layers / cfg.pp
    t = 0.0
    if cfg.tp > 1 and not cfg.attention_dp:
        lv = _nvlink_levels(cfg, cfg.tp)
        msg = tokens * m.hidden * ACTIVATION_BYTES
        t += 2 * layers * collective_time("all_reduce", msg, lv, in_network=True)
    if cfg.attention_dp and cfg.tp > 1:
        # each GPU holds tokens/tp of the iteration's tokens; MoE layers
        # dispatch (fp8) and combine (bf16) them to the experts' GPUs;
        # dense layers all-gather / reduce-scatter.
        lv = _nvlink_levels(cfg, cfg.tp)
        local = tokens / cfg.tp
        moe_layers = m.moe_layers / cfg.pp
        dense = layers - moe_layers
        k = max(1, m.active_experts)
        disp = local * k * m.hidden * 1.0
        comb = local * k * m.hidden * ACTIVATION_BYTES
        t += moe_layers * (collective_time("all_to_all", disp, lv) + collective_time("all_to_all", comb, lv))
        msg = tokens * m.hidden * ACTIVATION_BYTES
        t += dense * 2 * collective_time("all_reduce", msg, lv, in_network=True)
    elif cfg.ep > 1:
        lv = _nvlink_levels(cfg, cfg.tp)
        k = max(1, m.active_experts)
        disp = tokens / cfg.tp * k * m.hidden * ACTIVATION_BYTES
        t += m.moe_layers / cfg.pp * 2 * collective_time("all_to_all", disp, lv)
    return t


def _expert_fraction(m: ModelSpec, tokens: float) -> float:
    """Expected fraction of a layer's routed experts that `tokens` tokens touch."""
    if not m.is_moe or tokens <= 0:
        return 0.0 if tokens <= 0 else 1.0
    return 1.0 - (1.0 - m.active_experts / m.experts) ** tokens


def _stage_time(cfg: ServingConfig, prefill_tokens: float, prefill_attn_ctx: float, decode_seqs: float,
                decode_kv_tokens: float, logit_tokens: float) -> tuple[float, dict]:
    """Time of one pipeline stage over one micro-batch: GEMMs, attention,
    collectives (no overhead). Tokens are whole-replica counts for this
    micro-batch; prefill_attn_ctx is the sum over prefill tokens of the
    context each attends to."""
    m = cfg.model
    gpu = cfg.gpu
    tp, pp = cfg.tp, cfg.pp
    tokens = prefill_tokens + decode_seqs
    hbm = gpu.hbm_bw_Bps
    peak = gpu.peak_flops(cfg.precision) * GEMM_EFFICIENCY[cfg.precision]
    non_expert, expert, head = _weights(cfg)
    # --- GEMMs: per GPU
    dense_flops_tok = 2.0 * (m.params_matmul_active - m.vocab * m.hidden * (0 if m.tied_embeddings else 1))
    if m.is_moe:
        routed = m.moe_layers * m.active_experts * m.expert_params * 2.0
        dense_flops_tok -= routed
    else:
        routed = 0.0
    split = tp  # with attention DP each GPU does 1/tp of the tokens; otherwise 1/tp of each GEMM
    gemm_flops = (tokens * dense_flops_tok + tokens * routed * MOE_IMBALANCE) / split / pp
    gemm_flops += logit_tokens * 2.0 * m.vocab * m.hidden / (1 if cfg.attention_dp else tp) / (pp if pp == 1 else 1)
    if cfg.attention_dp:
        # the experts' GPUs see every routed token: per GPU tokens x k / (E) x (E/ep) experts, split tp/ep
        w_bytes = non_expert + head + expert * _expert_fraction(m, tokens)
    else:
        w_bytes = non_expert + head + expert * _expert_fraction(m, tokens)
    gemm_mem = w_bytes / (hbm * HBM_EFFICIENCY)
    gemm_cmp = gemm_flops / peak
    gemm = max(gemm_mem, gemm_cmp)
    # --- attention
    attn_split = tp
    kv_bytes = decode_kv_tokens * cfg.model.kv_bytes_per_token(_bytes(cfg.kv_prec)) * _kv_replication(cfg) / tp / pp
    attn_flops_dec = m.attention_flops_per_token(1.0) * decode_kv_tokens / attn_split / pp
    attn_flops_pre = m.attention_flops_per_token(1.0) * prefill_attn_ctx / attn_split / pp
    bf16 = gpu.peak_flops(PREFILL_ATTENTION_PRECISION if PREFILL_ATTENTION_PRECISION in gpu.tflops else "bf16")
    attn_dec = max(kv_bytes / (hbm * ATTENTION_HBM_EFFICIENCY), attn_flops_dec / (bf16 * ATTENTION_EFFICIENCY))
    attn_pre = attn_flops_pre / (bf16 * ATTENTION_EFFICIENCY)
    comm = _comm_time(cfg, tokens)
    total = gemm + attn_dec + attn_pre + comm
    return total, {"gemm_s": gemm, "gemm_memory_s": gemm_mem, "gemm_compute_s": gemm_cmp,
                   "attention_decode_s": attn_dec, "attention_prefill_s": attn_pre, "communication_s": comm}


def _iteration(cfg: ServingConfig, prefill_tokens: float, prefill_attn_ctx: float, decode_seqs: float,
               decode_kv_tokens: float, prefill_seqs: float) -> tuple[float, float, dict]:
    """(iteration time, time one token takes through all stages, breakdown).

    With pp > 1 the iteration's work is split into pp micro-batches that
    fill the pipeline: every stage processes each micro-batch once."""
    pp = cfg.pp
    logits = decode_seqs + prefill_seqs
    mb = 1.0 / pp
    stage, parts = _stage_time(cfg, prefill_tokens * mb, prefill_attn_ctx * mb, decode_seqs * mb,
                               decode_kv_tokens * mb, logits * mb)
    p2p = 0.0
    if pp > 1:
        msg = (prefill_tokens + decode_seqs) * mb * cfg.model.hidden * ACTIVATION_BYTES
        lv = levels_for_group(cfg.system, cfg.fabric, cfg.gpu, pp, stride=cfg.tp)
        p2p = collective_time("send_recv", msg, lv) if lv else 0.0
    overhead = ITERATION_OVERHEAD_S + PER_SEQUENCE_OVERHEAD_S * (decode_seqs + prefill_seqs)
    # pp micro-batches pass pp stages: pp stage-times of work per stage
    it = pp * (stage + p2p) + overhead
    parts = {k: v * pp for k, v in parts.items()}
    parts["pipeline_s"] = pp * p2p
    parts["overhead_s"] = overhead
    return it, it, parts


def prefill_time(cfg: ServingConfig, new_tokens: int, cached_context: int = 0, seqs: int = 1) -> float:
    """Seconds to prefill `new_tokens` (spread evenly over `seqs` sequences,
    each with `cached_context` tokens already in the KV cache), alone."""
    if new_tokens <= 0:
        return 0.0
    seqs = max(1, seqs)
    n = new_tokens / seqs
    ctx = seqs * (n * cached_context + n * (n + 1) / 2.0)
    return _iteration(cfg, float(new_tokens), ctx, 0.0, 0.0, float(seqs))[0]


def decode_step_time(cfg: ServingConfig, batch: int, context_tokens_total: int) -> float:
    """One decode iteration for `batch` sequences holding
    `context_tokens_total` tokens of KV in all."""
    if batch <= 0:
        return 0.0
    return _iteration(cfg, 0.0, 0.0, float(batch), float(context_tokens_total), 0.0)[0]


def iteration_time(cfg: ServingConfig, prefill_tokens: int, prefill_context: int, decode_batch: int,
                   decode_context_total: int) -> float:
    """One continuous-batching iteration: `prefill_tokens` chunked-prefill
    tokens attending on average to `prefill_context` tokens each (cached
    prefix plus the causal half of the chunk), plus one token for each of
    `decode_batch` sequences that hold `decode_context_total` KV tokens."""
    if prefill_tokens <= 0 and decode_batch <= 0:
        return 0.0
    return _iteration(cfg, float(prefill_tokens), float(prefill_tokens) * float(prefill_context),
                      float(decode_batch), float(decode_context_total), 1.0 if prefill_tokens > 0 else 0.0)[0]


def kv_transfer_time(cfg: ServingConfig, tokens: int, levels: Sequence[Level]) -> float:
    """Disaggregated serving: time to move `tokens` tokens of KV cache from
    a prefill replica to a decode replica over `levels` (one stream per GPU
    of the replica, in parallel)."""
    if tokens <= 0:
        return 0.0
    per_gpu = tokens * memory_plan(cfg).kv_bytes_per_token / replica_gpus(cfg)
    if not levels:
        return per_gpu / (cfg.gpu.nvlink_bw_Bps)
    return collective_time("send_recv", per_gpu, levels)


# ---------------------------------------------------------------------------
# Steady state
# ---------------------------------------------------------------------------
def _blocks(tokens: float) -> float:
    return math.ceil(tokens / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


def _max_batch(cfg: ServingConfig, input_tokens: int, output_tokens: int, samples: int) -> int:
    plan = memory_plan(cfg)
    per_request = _blocks(input_tokens) + samples * _blocks(output_tokens)
    fit = int(plan.kv_capacity_tokens // per_request) * samples
    limit = cfg.max_batch or DEFAULT_MAX_BATCH
    return max(0, min(fit, limit))


def _steady(cfg: ServingConfig, batch: int, I: int, O: int, samples: int) -> dict:
    """Steady state of continuous batching with `batch` decoding sequences."""
    B = float(batch)
    req_per_iter = B / samples / O                 # requests finishing (and starting) per decode iteration
    prefill_per_iter = req_per_iter * I            # prompt tokens to prefill per iteration, on average
    M = cfg.max_num_tokens
    # iterations needed per O decode iterations when the token budget binds
    iters = max(float(O), (B * O / samples * samples + B / samples * I) / M) if False else max(float(O), (B * O + B / samples * I) / M)
    dec_seqs = B * O / iters
    pre_tokens = B / samples * I / iters
    pre_seqs = min(pre_tokens, B / samples / iters * math.ceil(I / M) if I > M else B / samples / iters)
    kv_dec = dec_seqs * (I + O / 2.0)
    ctx_pre = pre_tokens * (I / 2.0)
    it, _, parts = _iteration(cfg, pre_tokens, ctx_pre, dec_seqs, kv_dec, pre_seqs)
    cycle = iters * it
    tokens_per_s = B * O / cycle
    tpot = cycle / O
    return {"iteration_s": it, "tokens_per_s": tokens_per_s, "tpot_s": tpot, "parts": parts,
            "prefill_per_iter": pre_tokens, "decode_per_iter": dec_seqs, "iters_per_cycle": iters}


def _ttft(cfg: ServingConfig, batch: int, I: int, O: int, samples: int, st: dict) -> float:
    """Time from a request's admission to its first token with the engine
    running `batch` sequences: its prompt goes in chunks of what the token
    budget leaves after the decoding sequences."""
    room = max(1.0, cfg.max_num_tokens - st["decode_per_iter"])
    chunks = max(1, math.ceil(I / room))
    return chunks * st["iteration_s"]


def _tpot_p99(cfg: ServingConfig, batch: int, I: int, O: int, st: dict) -> float:
    """The slowest iteration a decoding sequence sees: one carrying a full
    prefill chunk next to the decodes."""
    dec = st["decode_per_iter"]
    chunk = min(float(I), max(0.0, cfg.max_num_tokens - dec)) if st["prefill_per_iter"] > 0 else 0.0
    chunk = max(chunk, st["prefill_per_iter"])
    it = _iteration(cfg, chunk, chunk * I / 2.0, dec, dec * (I + O / 2.0), 1.0)[0]
    return it * st["iters_per_cycle"] / O


@lru_cache(maxsize=65536)
def estimate(cfg: ServingConfig, input_tokens: int, output_tokens: int, ttft_slo: Optional[float] = None,
             tpot_slo: Optional[float] = None, samples: int = 1) -> ServingEstimate:
    """Throughput and latency of one replica on uniform requests of
    `input_tokens` in / `output_tokens` out (x `samples` answers sharing the
    prompt's KV prefix). Without SLOs: maximum offline throughput. With SLOs
    (seconds): the best throughput whose p99 TTFT/TPOT meet them; an SLO
    that cannot be met at batch 1 raises InputError."""
    I, O, n = int(input_tokens), int(output_tokens), int(samples)
    if I < 1 or O < 1:
        raise InputError(f"input and output tokens must be >= 1 (got {input_tokens}, {output_tokens})", "tokens", "give positive token counts")
    if n < 1:
        raise InputError(f"samples must be >= 1, got {samples}", "samples", "give 1 or more")
    if I + O > cfg.model.max_seq:
        raise InputError(f"{I} input + {O} output tokens exceed {cfg.model.name}'s context of {cfg.model.max_seq}",
                         "tokens", "shorten the request or pick a longer-context model")
    plan = memory_plan(cfg)
    bmax = _max_batch(cfg, I, O, n)
    if bmax < 1:
        need = (_blocks(I) + n * _blocks(O)) * plan.kv_bytes_per_token
        raise InputError(f"one request's KV cache ({need / 2**30:.2f} GiB) exceeds the replica's KV pool "
                         f"({plan.kv_cache_bytes / 2**30:.2f} GiB)", f"{I}+{O} tokens", "use more GPUs per replica or shorter requests")
    slo = ttft_slo is not None or tpot_slo is not None

    def ok(b: int) -> tuple[bool, dict, float, float]:
        st = _steady(cfg, b, I, O, n)
        tpot = _tpot_p99(cfg, b, I, O, st) if slo else st["tpot_s"]
        ttft = _ttft(cfg, b, I, O, n, st)
        good = (tpot_slo is None or tpot <= tpot_slo) and (ttft_slo is None or ttft <= ttft_slo)
        return good, st, tpot, ttft

    batch = bmax
    good, st, tpot, ttft = ok(batch)
    if slo and not good:
        lo, hi = 1, bmax
        g1 = ok(1)
        if not g1[0]:
            raise InputError(f"the SLOs cannot be met even at batch 1 (TTFT {g1[3]:.3g} s, TPOT {g1[2]:.3g} s)",
                             "--ttft-slo/--tpot-slo", "relax the SLOs or use faster GPUs / more tensor parallelism")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(mid)[0]:
                lo = mid
            else:
                hi = mid
        batch = lo
        good, st, tpot, ttft = ok(batch)
    tps = st["tokens_per_s"] * (SERVER_LOAD_MARGIN if slo else 1.0)
    limited = "kv_cache" if batch == _max_batch(cfg, I, O, n) and batch < (cfg.max_batch or DEFAULT_MAX_BATCH) else (
        "max_batch" if batch == (cfg.max_batch or DEFAULT_MAX_BATCH) else "slo")
    kv_used = (batch / n) * (I + n * (O / 2.0)) * plan.kv_bytes_per_token
    rps = tps / (O * n)
    return ServingEstimate(
        output_tokens_per_s=tps, requests_per_s=rps, ttft_s=ttft, tpot_s=tpot, batch_size=batch,
        kv_cache_bytes=kv_used, memory_per_gpu_bytes=plan.memory_per_gpu_bytes,
        e2e_latency_s=ttft + tpot * (O - 1), input_tokens_per_s=rps * I, iteration_s=st["iteration_s"],
        limited_by=limited, breakdown=dict(st["parts"]))


def replicas_needed(cfg: ServingConfig, requests_per_s: float, input_tokens: int, output_tokens: int,
                    ttft_slo: Optional[float] = None, tpot_slo: Optional[float] = None, samples: int = 1) -> int:
    """Replicas of `cfg` that serve `requests_per_s` within the SLOs."""
    if requests_per_s <= 0:
        return 0
    est = estimate(cfg, int(input_tokens), int(output_tokens), ttft_slo, tpot_slo, int(samples))
    return max(1, math.ceil(requests_per_s / est.requests_per_s - 1e-9))
