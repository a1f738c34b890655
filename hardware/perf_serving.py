"""Analytical performance model of one LLM serving replica: memory plan,
prefill and decode times, continuous batching with chunked prefill, and the
throughput/latency a replica delivers offline or under latency SLOs.

The same functions feed ``gpusim serve-estimate``, the request-level
simulator (one ``iteration_time`` call per engine iteration) and the fleet
mode of the cluster engine (``replicas_needed``), so they are cached and cheap:
everything about a configuration that does not depend on the iteration's
token counts (weights, per-token FLOP and byte coefficients, per-layer
costs) is computed once into a replica profile kept on the ServingConfig,
and an iteration is a closed form over it (~2-6 us per call; collective
times are memoised by token count).

API
---
ServingConfig(model, gpu, system, fabric, tp=1, pp=1, ep=1, precision="fp8",
              kv_precision=None, max_batch=None, max_num_tokens=8192,
              attention_dp=False)
replica_gpus(cfg) -> int                                  tp * pp
memory_plan(cfg) -> MemoryPlan                            InputError (need vs capacity) if weights do not fit
prefill_time(cfg, new_tokens, cached_context=0, seqs=1) -> s
decode_step_time(cfg, batch, context_tokens_total) -> s
iteration_time(cfg, prefill_tokens, prefill_context, decode_batch, decode_context_total, prefill_seqs=1) -> s
iteration_breakdown(cfg, ...same...) -> dict              seconds per part (gemm, attention, communication, overhead)
kv_transfer_time(cfg, tokens, levels) -> s
max_batch(cfg, input_tokens, output_tokens, samples=1) -> int
estimate(cfg, input_tokens, output_tokens, ttft_slo=None, tpot_slo=None, samples=1) -> ServingEstimate
replicas_needed(cfg, requests_per_s, input_tokens, output_tokens, ttft_slo, tpot_slo, samples=1) -> int
layouts(model, gpu, system, gpus, ...) -> list[dict]      the tp/pp/ep/attention_dp choices for `gpus` GPUs
best_layout(model, gpu, system, fabric, gpus, precision, input_tokens, output_tokens, ...)
    -> (ServingConfig, ServingEstimate, replicas)         the layout with the best total throughput

Model (per GPU of the replica, SI units)
----------------------------------------
One engine iteration runs every layer once over the iteration's tokens
(chunked-prefill tokens plus one token per decoding sequence). Its time is a
sum over kernel classes, each combining its memory time m and compute time c
as (m^2 + c^2)^(1/2) (a roofline rounded at the ridge, ROOFLINE_SHARPNESS),
plus collectives and a per-iteration overhead:

- Dense GEMMs (attention projections, dense MLPs, shared experts, output
  head): weights / (HBM bw x HBM_EFFICIENCY) against
  2 x params x tokens / (peak(precision) x GEMM_EFFICIENCY[precision]).
- Routed experts (MoE): the weights of the experts the iteration's tokens
  reach (E(1-(1-k/E)^T) of E for T tokens choosing k) against the routed
  FLOPs at MOE_GEMM_EFFICIENCY of dense, thinner when experts are
  tensor-split below EXPERT_SLICE_MIN_COLUMNS, times MOE_IMBALANCE with
  expert parallelism; plus the permute/activation HBM passes over every
  routed token copy (MOE_HIDDEN_PASSES, MOE_INNER_PASSES).
- Attention: prefill is compute (score and value products over the causal
  context) at bf16 peak x ATTENTION_EFFICIENCY; decode reads each cached
  token's KV at HBM bw x ATTENTION_HBM_EFFICIENCY against its FLOPs (MLA
  decodes with absorbed projections over the whole latent).
- Tensor parallel: two all-reduces per layer of tokens x hidden x 2 bytes
  (hardware.collectives on NVLink, with in-switch reduction), each plus the
  engine's fixed cost per collective (TP_COLLECTIVE_OVERHEAD_S). Experts over ep
  of the tp GPUs need no dispatch: every GPU holds every token and the MLP
  all-reduce sums the experts' outputs.
- Attention data parallel (opt-in): each GPU runs attention for its own
  sequences (no KV copies, whole attention weights per GPU); MoE layers
  all-gather the tokens and reduce-scatter the outputs; the busiest GPU sets
  the pace (ATTENTION_DP_BALANCE, and a prompt chunk is never split).
- Pipeline parallel: the iteration is split into pp micro-batches that fill
  the pipeline; each GPU reads its stage's weights once per micro-batch.
- Element-wise kernels outside the GEMMs (residual adds, RMSNorms,
  quantisation, gated activation): ELEMENTWISE_HIDDEN_PASSES over the
  hidden size on every GPU of the tensor-parallel group (the residual stream
  is replicated, so this does not shrink with tp) and
  ELEMENTWISE_INNER_PASSES over each GPU's slice of the dense MLP.
- LAYER_OVERHEAD_S per layer per micro-batch (kernel boundaries inside the
  CUDA graph), ITERATION_OVERHEAD_S + PER_SEQUENCE_OVERHEAD_S x sequences
  per iteration (scheduling, sampling, host-device synchronisation).

Offline throughput (all requests queued, as trtllm-bench and MLPerf offline
measure it) is the steady state of continuous batching: B sequences decode,
and B/O new prompts are prefilled per decode iteration in chunks of at most
max_num_tokens tokens. B is the largest batch the KV cache holds (each
sequence reserves whole blocks for its full input + output, TensorRT-LLM's
GUARANTEED_NO_EVICT policy), up to max_batch. With SLOs, B is the largest
batch whose TPOT (mean iteration time) and TTFT (chunked prefill of the
prompt in steady state) meet them, and the replica runs at
SERVER_LOAD_MARGIN of that rate so that Poisson queues stay short.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Sequence

from hardware.catalog import GPU, Fabric, System
from hardware.collectives import Level, collective_time, levels_for_group
from workloads.errors import InputError
from workloads.models import BYTES_PER_PARAM, ModelSpec

# ---------------------------------------------------------------------------
# Efficiency factors (each a fraction of a datasheet peak), with sources.
# ---------------------------------------------------------------------------
HBM_EFFICIENCY = 0.85
"""Fraction of datasheet HBM bandwidth that weight-streaming GEMMs reach in
decode. Memory-bound kernels reach ~90% of peak on H100 (copy kernels
~3.0 of 3.35 TB/s, NVIDIA Hopper tuning guide); TensorRT-LLM low-batch
decode GEMV/GEMM kernels are reported at 80-90%."""

ATTENTION_HBM_EFFICIENCY = 0.75
"""Fraction of HBM bandwidth decode attention reaches reading a paged KV
cache (FlashInfer and TensorRT-LLM XQA report 70-80% of peak for long
contexts, 0.75 the middle; short pages and many small sequences keep it
below streaming GEMMs). Kernel gaps and the norms around attention are
counted apart (LAYER_OVERHEAD_S, ELEMENTWISE_HIDDEN_PASSES)."""

GEMM_EFFICIENCY = {"bf16": 0.70, "fp16": 0.70, "fp8": 0.62, "fp6": 0.45, "fp4": 0.40, "int8": 0.62}
"""Fraction of dense tensor-core peak that inference GEMMs reach, per
precision: cuBLASLt/CUTLASS BF16 GEMMs on H100 run ~700 of 989 TFLOP/s;
FP8 ~1,200-1,300 of 1,979 (per-tensor/block scaling epilogues cost more).
Block-scaled NVFP4 (and FP6) GEMMs on B200 reach well under their 9,000
TFLOP/s datasheet peak at serving shapes (scale-factor loads, K-tiles of
the 16-element blocks, short M in decode): ~3,500-4,000 TFLOP/s, 0.40."""

MOE_GEMM_EFFICIENCY = 0.60
"""Grouped expert GEMMs relative to one large GEMM of the same FLOPs: many
small per-expert problems (a few hundred rows each), token permutation and
block-scaled FP8/FP4 quantisation of the routed activations. DeepSeek's
DeepGEMM reports 1.0-1.2x its dense figure for large grouped shapes but
~0.5-0.7x for the per-expert shapes of decode and short prefill; TensorRT-LLM
MoE kernels sit in the same range."""

ATTENTION_EFFICIENCY = 0.55
"""Fraction of BF16 peak that prefill attention (FlashAttention-3 class,
causal) reaches: FA3 reports 500-740 TFLOP/s of 989 on H100 for head dim
128 (Shah et al. 2024); causal masking and short sequences lower it."""

ITERATION_OVERHEAD_S = 1.5e-3
"""Per engine iteration: scheduling, sampling, host-device synchronisation
and the gap between one iteration's graph and the next (the kernel gaps
inside the forward pass are LAYER_OVERHEAD_S). vLLM's v0.6 performance notes
measured 1-4 ms of CPU work per step at large batch before overlapping it;
TensorRT-LLM's C++ executor profiles show ~1-2 ms between decode steps."""

PER_SEQUENCE_OVERHEAD_S = 1.0e-6
"""Host time per sequence per iteration (batch bookkeeping, sampling
metadata, detokenisation hand-off): ~1 us per request in TensorRT-LLM's
C++ executor."""

ELEMENTWISE_HIDDEN_PASSES = 7.0
"""BF16 passes over a hidden-sized activation per token per layer made by
kernels outside the GEMMs, on every GPU of the tensor-parallel group (the
residual stream is not split): the two fused (all-reduce +) residual-add +
RMSNorm (+ quantise) kernels of a layer each read the block output and the
residual and write the residual and the normalised input, 2 + 2 + 2 + 1
bytes per element with an FP8 output, 14 bytes = 7 BF16 passes per layer
(TensorRT-LLM's fused AllReduce/RMSNorm kernels; vLLM's fused_add_rms_norm).
With tensor parallelism these bytes do not shrink while the weights and
FLOPs per GPU do (Llama 3.1 405B at tp 8: 29 MB per token on every GPU,
~5% of a decode step at batch 600 on H200; Llama 3 8B at tp 1: 1.8 MB)."""

ELEMENTWISE_INNER_PASSES = 2.5
"""BF16 passes over a dense MLP's tensor-split inner activation per token per
layer: the gated activation (SiLU(gate) x up, quantised for the down GEMM)
reads both halves and writes the product, 2 + 2 + 1 bytes = 2.5 passes.
Routed experts count theirs in MOE_INNER_PASSES."""

LAYER_OVERHEAD_S = 12e-6
"""Per layer per micro-batch: the ~8 kernel boundaries of a transformer layer
(two norms, QKV, attention, output projection, gate/up, activation, down)
inside a CUDA graph cost ~1.5 us each in launch latency and in the drain and
ramp of partial waves (NVIDIA 'Getting Started with CUDA Graphs': ~1-2 us
per kernel node once launched as a graph). 1.5 ms over Llama 3.1 405B's 126
layers; the fixed per-iteration host work is ITERATION_OVERHEAD_S."""

TP_COLLECTIVE_OVERHEAD_S = 8e-6
"""Fixed cost per tensor-parallel collective on top of the alpha-beta time of
hardware.collectives (whose NVLink step latency gives ~4 us for a small
8-GPU all-reduce): the cross-GPU barrier of the engine's all-reduce kernel
and its serial residual/norm epilogue. Small all-reduces measure ~10-20 us
at 8 GPUs (nccl-tests all_reduce_perf on DGX H100; TensorRT-LLM's one-shot
all-reduce ~8-12 us), i.e. ~8 us more. Llama 3.1 405B at batch 1 decode:
252 all-reduces per step, ~2 ms of a ~19 ms step on 8 x H200, near the
~50 tokens/s/user NVIDIA published for that setup at batch 1 (technical
blog on Llama 3.1 405B with Model Optimizer FP8, Aug 2024)."""

ROOFLINE_SHARPNESS = 2.0
"""How a kernel's memory and compute times combine: (m^p + c^p)^(1/p). A
sharp roofline (p -> infinity, max(m, c)) overstates what GEMMs reach near
the ridge point, where neither weight streaming nor tensor cores are fully
busy; measured GEMM throughput against arithmetic intensity bends smoothly
through the ridge (NVIDIA 'Matrix multiplication background' guide,
Fig. 'performance vs. arithmetic intensity'), which p = 2 follows: at the
ridge it takes sqrt(2) of either time, far from it the larger one."""

EXPERT_SLICE_MIN_COLUMNS = 512
"""An expert split tensor-parallel keeps expert_ffn / (tp/ep) columns per GPU;
below ~512 columns its GEMMs cannot fill the 128-256-wide tensor-core tiles
and wave of SMs, and throughput drops in proportion (CUTLASS grouped-GEMM
tile shapes; why TensorRT-LLM and vLLM recommend expert parallelism for
fine-grained MoEs such as Qwen3 and DeepSeek)."""

MOE_HIDDEN_PASSES = 4
MOE_INNER_PASSES = 6
"""HBM passes over each routed token copy in a MoE layer, counted from the
unfused kernels of a grouped-GEMM MoE (TensorRT-LLM / vLLM fused_moe):
hidden-sized: permute read + write, expert-output write + un-permute read
(4); inner-sized (expert_ffn): gate/up output write + read by the
activation, activation output write + read by the down GEMM, both halves of
the gated pair (6). In BF16."""

MOE_IMBALANCE = 1.25
"""Expert parallelism: routed tokens on the busiest GPU over the mean. Real
routers are not uniform; without redundant experts (DeepSeek's EPLB) the
hottest of 8 expert-parallel GPUs carries roughly 1.2-1.3x the mean token
load (DeepSeek-V3 report Sec. 2.1.2 on load balance; TensorRT-LLM's wide-EP
blog on hot ranks), 1.25 here."""

ATTENTION_DP_BALANCE = 0.54
"""Attention data parallelism: mean over busiest GPU's attention tokens per
iteration (the 'balance ratio'). Ranks run different mixes of prompt chunks
and decodes and the slowest sets the iteration. TensorRT-LLM measured 54.1%
with its round-robin scheduler on DeepSeek-V3, 8 GPUs (tech blog 10, 'ADP
Balance Strategy', 2025) and 87.7% with the waiting scheduler it then added."""

MEMORY_FRACTION = 0.90
"""Fraction of the memory left after weights and workspace that becomes KV
cache: TensorRT-LLM's kv_cache_free_gpu_mem_fraction default (0.9); vLLM's
gpu_memory_utilization also defaults to 0.9."""

RUNTIME_RESERVED_BYTES = 2.0 * 2**30
"""CUDA context, cuBLAS/NCCL workspaces and allocator slack per GPU (~1.5-3
GiB in nvidia-smi for an idle TensorRT-LLM or vLLM engine)."""

EMBEDDING_PRECISION = "bf16"
"""Quantised checkpoints (NVIDIA ModelOpt FP8/NVFP4) keep the embedding,
the output head and the MoE router in BF16."""

KV_BLOCK_TOKENS = 32
"""Tokens per paged KV-cache block (TensorRT-LLM tokens_per_block default);
a sequence reserves whole blocks."""

DEFAULT_MAX_BATCH = 2048
"""Runtime max batch per attention group when none is given (TensorRT-LLM
BuildConfig default max_batch_size = 2048). With attention data parallelism
each GPU schedules its own batch of up to this many sequences."""

ACTIVATION_BYTES = 2.0
"""Activations, all-reduce and MoE-combine payloads travel in BF16."""

DISPATCH_BYTES = {"fp8": 1.0, "fp4": 0.5625, "fp6": 0.75}
"""MoE dispatch sends activations already quantised for the expert GEMMs
(FP8/NVFP4 dispatch in DeepEP and TensorRT-LLM); other precisions send BF16."""

PREFILL_ATTENTION_PRECISION = "bf16"
"""Prefill attention runs on BF16 tensor cores (FP8 context attention is
optional and not assumed)."""

SERVER_LOAD_MARGIN = 0.90
"""Under latency SLOs with Poisson arrivals a replica must run below its
saturated rate so that queues, and with them p99 TTFT, stay bounded: ~90%
(an M/D/c queue with c in the hundreds of batch slots waits little below
~90% load; MLPerf LLM server results sit at 0.85-0.95 of offline on the
same systems)."""

_KV_DEFAULT = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "fp6": "fp8", "fp4": "fp8"}
"""KV-cache precision when none is given: FP8 for FP8/FP4 checkpoints
(ModelOpt quantises the KV cache to FP8 with the weights), otherwise the
weights' precision."""

SERVING_PRECISIONS = ("bf16", "fp16", "fp8", "fp6", "fp4", "int8")


# ---------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingConfig:
    """One serving replica: a model on tp x pp GPUs of one kind.

    ep divides tp: MoE experts are spread over ep GPUs and each expert is
    tensor-split tp/ep ways. attention_dp runs attention data-parallel over
    the tp GPUs (each keeps whole attention weights and its own sequences'
    KV cache) while MLPs stay tensor-split and experts expert-parallel.
    max_num_tokens is the chunked-prefill token budget of one iteration (per
    attention group). max_batch caps the sequences of one attention group.
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
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {v!r}", name,
                                 f"give --{name.replace('_', '-')} 1 or more")
        if self.max_batch is not None and (isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int)
                                           or self.max_batch < 1):
            raise InputError(f"max_batch must be a whole number >= 1, got {self.max_batch!r}", "max_batch",
                             "give --max-batch 1 or more")
        if self.precision not in SERVING_PRECISIONS:
            raise InputError(f"unknown serving precision {self.precision!r}", "precision",
                             "use one of " + ", ".join(SERVING_PRECISIONS))
        if self.kv_precision is not None and self.kv_precision not in SERVING_PRECISIONS:
            raise InputError(f"unknown KV-cache precision {self.kv_precision!r}", "kv_precision",
                             "use one of " + ", ".join(SERVING_PRECISIONS))
        if self.tp % self.ep:
            raise InputError(f"ep ({self.ep}) must divide tp ({self.tp})", "ep",
                             "experts spread over ep of the tp GPUs; pick ep among the divisors of tp")
        if self.ep > 1 and not self.model.is_moe:
            raise InputError(f"model {self.model.name!r} has no experts, so ep must be 1", "ep",
                             "drop --ep or pick a mixture-of-experts model")
        if self.ep > 1 and self.model.experts % self.ep:
            raise InputError(f"ep ({self.ep}) must divide the {self.model.experts} experts of {self.model.name!r}",
                             "ep", "pick ep among the divisors of the expert count")
        if self.attention_dp and self.tp == 1:
            raise InputError("attention data parallelism needs tp > 1", "attention_dp",
                             "give --tp 2 or more, or drop --attention-dp")
        if self.pp > self.model.layers:
            raise InputError(f"pp ({self.pp}) exceeds the {self.model.layers} layers of {self.model.name!r}", "pp",
                             "use fewer pipeline stages")
        if self.tp > self.system.nvlink_domain_gpus:
            raise InputError(f"tp ({self.tp}) exceeds the NVLink domain of {self.system.name} "
                             f"({self.system.nvlink_domain_gpus} GPUs)", "tp",
                             "keep tensor parallelism inside one NVLink domain; add pipeline stages (--pp) instead")
        self.gpu.peak_flops(self.precision)  # InputError if the GPU has no such tensor cores

    def __hash__(self):
        # computed once: every cached function of a config hashes it per call
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(_key(self))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self):
        # the cached hash (string hashes differ between processes) and the
        # replica profile stay behind when a config is pickled or copied
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @property
    def kv_prec(self) -> str:
        """The KV cache's precision (the explicit one or the default)."""
        return self.kv_precision or _KV_DEFAULT[self.precision]

    @property
    def groups(self) -> int:
        """Attention groups: GPUs that each run their own batch of sequences."""
        return self.tp if self.attention_dp else 1


def _key(cfg: ServingConfig) -> tuple:
    g, m = cfg.gpu, cfg.model
    return (m.name, m.layers, m.hidden, m.heads, m.kv, m.hd, m.ffn, m.experts, m.active_experts, m.vocab,
            m.kv_lora_rank, g.name, g.hbm_gib, g.hbm_tbps, g.nvlink_gbps_bidir, tuple(sorted(g.tflops.items())),
            cfg.system.name, cfg.system.nvlink_domain_gpus, cfg.fabric.name,
            cfg.tp, cfg.pp, cfg.ep, cfg.precision, cfg.kv_precision, cfg.max_batch, cfg.max_num_tokens,
            cfg.attention_dp)


@dataclass(frozen=True)
class MemoryPlan:
    """Memory of one replica. Per-GPU figures are for the most loaded GPU."""
    weights_bytes_per_gpu: float
    activation_bytes_per_gpu: float
    reserved_bytes_per_gpu: float
    kv_bytes_per_token: float          # whole replica, all copies of one token's KV
    kv_capacity_tokens: int            # whole replica
    kv_cache_bytes: float              # whole replica: the KV pool
    memory_per_gpu_bytes: float        # weights + workspace + KV pool, per GPU
    capacity_per_gpu_bytes: float


@dataclass(frozen=True)
class ServingEstimate:
    """What one replica delivers on uniform requests."""
    output_tokens_per_s: float         # whole replica
    requests_per_s: float
    ttft_s: float
    tpot_s: float
    batch_size: int                    # decoding sequences in steady state
    kv_cache_bytes: float              # KV in use at that batch, whole replica
    memory_per_gpu_bytes: float
    e2e_latency_s: float = 0.0
    input_tokens_per_s: float = 0.0
    iteration_s: float = 0.0
    limited_by: str = ""               # kv_cache | max_batch | slo
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


@dataclass(frozen=True)
class _Weights:
    """Per-GPU weight bytes by class (the most loaded stage)."""
    attention: float   # attention projections (replicated under attention DP)
    dense: float       # dense MLPs and shared experts (tensor-split)
    experts: float     # routed experts, all of this GPU's
    head: float        # embedding / output head (+ router)

    @property
    def total(self) -> float:
        return self.attention + self.dense + self.experts + self.head


@lru_cache(maxsize=4096)
def _weights(cfg: ServingConfig) -> _Weights:
    m = cfg.model
    b = _bytes(cfg.precision)
    eb = _bytes(EMBEDDING_PRECISION)
    tp, pp = cfg.tp, cfg.pp
    dense_layers = m.layers - m.moe_layers
    attention = m.layers * m.attn_params * b / (1 if cfg.attention_dp else tp) / pp
    dense = (dense_layers * m.dense_mlp_params + m.moe_layers * m.shared_experts * m.expert_params) * b / tp / pp
    experts = m.moe_layers * m.experts * m.expert_params * b / tp / pp   # E/ep experts, each split tp/ep ways
    router = m.moe_layers * m.hidden * m.experts * eb / pp
    # input embedding on the first stage, output head on the last; the
    # output head is vocab-split over tp (replicated under attention DP)
    embed = m.embedding_params * eb / (1 if cfg.attention_dp else tp)
    head = (embed / 2 if pp > 1 and not m.tied_embeddings else embed) + router
    return _Weights(attention, dense, experts, head)


def _kv_replication(cfg: ServingConfig) -> float:
    """Copies of each token's KV that the replica keeps."""
    m = cfg.model
    if cfg.attention_dp:
        return 1.0
    if m.is_mla:
        return float(cfg.tp)            # the compressed latent is not split across heads
    return cfg.tp / min(cfg.tp, m.kv)   # GQA: KV heads are replicated when tp > kv_heads


def _activation_bytes(cfg: ServingConfig) -> float:
    """Per-GPU workspace for one iteration of max_num_tokens tokens."""
    m = cfg.model
    t = cfg.max_num_tokens
    split = 1 if cfg.attention_dp else cfg.tp
    inner = max(m.ffn if m.moe_layers < m.layers else 0, m.efn * max(1, m.active_experts + m.shared_experts)) / cfg.tp
    qkv = (m.heads + 2 * m.kv) * m.attn_qk_dim / split
    per_token = (4 * m.hidden + 2 * inner + qkv) * ACTIVATION_BYTES
    logits = min(t, cfg.max_batch or DEFAULT_MAX_BATCH) * m.vocab * 4.0 / split
    return t * per_token + logits


@lru_cache(maxsize=4096)
def memory_plan(cfg: ServingConfig) -> MemoryPlan:
    """Weights, workspace and KV pool of the replica; InputError with need
    vs capacity when the weights and workspace do not fit a GPU."""
    weights = _weights(cfg).total
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
            "use more GPUs per replica (--tp/--pp), a lower --precision, or a GPU with more memory")
    free = (cap - need) * MEMORY_FRACTION
    gpus = replica_gpus(cfg)
    kv_tok = cfg.model.kv_bytes_per_token(_bytes(cfg.kv_prec)) * _kv_replication(cfg)
    capacity = int(free * gpus / kv_tok)
    return MemoryPlan(weights, act, RUNTIME_RESERVED_BYTES, kv_tok, capacity, free * gpus, need + free, cap)


# ---------------------------------------------------------------------------
# Time of one iteration: a per-configuration profile, then a closed form
# ---------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _levels(cfg: ServingConfig, group: int, stride: int = 1) -> tuple[Level, ...]:
    if group <= 1:
        return ()
    return tuple(levels_for_group(cfg.system, cfg.fabric, cfg.gpu, group, stride=stride))


def _decode_attention_flops(m: ModelSpec) -> float:
    """Decode attention FLOPs per (query token x cached token), all layers.
    MLA decodes with the up-projections absorbed into the query and output
    (DeepSeek-V2 paper, Sec. 2.1.2; FlashMLA): every head scores against the
    whole compressed latent + rope key and reads the latent as its value."""
    if m.is_mla:
        return 2.0 * m.layers * m.heads * ((m.kv_lora_rank + m.qk_rope_dim) + m.kv_lora_rank)
    return m.attention_flops_per_token(1.0)


def _roof(memory_s: float, compute_s: float) -> float:
    """Kernel time from its memory and compute times (see ROOFLINE_SHARPNESS)."""
    p = ROOFLINE_SHARPNESS
    return (memory_s ** p + compute_s ** p) ** (1.0 / p)


def _expert_fraction(m: ModelSpec, tokens: float) -> float:
    """Expected fraction of a layer's routed experts that `tokens` tokens reach."""
    if tokens <= 0:
        return 0.0
    if not m.is_moe:
        return 1.0
    return 1.0 - (1.0 - m.active_experts / m.experts) ** tokens


_MEMO_LIMIT = 65536
"""Entries a profile keeps of collective times by token count before it
starts over (the request simulator asks for a few thousand distinct counts)."""


class _Profile:
    """Everything about one replica configuration that does not depend on the
    iteration's token counts, computed once per ServingConfig: per-token and
    per-layer coefficients (seconds per token on the busiest GPU of one
    pipeline stage, for one micro-batch) so that an iteration is a closed
    form in its token counts. Collective times, which hardware.collectives
    prices by message size, are memoised by token count."""
    __slots__ = ("cfg", "tp", "pp", "mb", "groups", "adp", "moe", "inv_tp", "dense_mem", "attn_proj", "dense_tok",
                 "head_tok", "routed_tok", "moe_peak", "moe_mem", "moe_miss", "moe_act_tok", "kv_mem_tok",
                 "kv_cmp_tok", "pre_unit", "ew_hidden", "ew_inner", "layer_s", "p2p_memo", "comm_memo",
                 "act_bytes", "disp_bytes", "layers", "moe_layers", "dense_layers", "lv_tp", "lv_pp")

    def __init__(self, cfg: ServingConfig):
        m, gpu = cfg.model, cfg.gpu
        tp, pp = cfg.tp, cfg.pp
        self.cfg, self.tp, self.pp, self.mb, self.groups = cfg, tp, pp, 1.0 / pp, cfg.groups
        self.adp, self.moe, self.inv_tp = cfg.attention_dp, m.is_moe, 1.0 / tp
        hbm = gpu.hbm_bw_Bps
        peak = gpu.peak_flops(cfg.precision) * GEMM_EFFICIENCY[cfg.precision]
        bf16 = gpu.peak_flops(PREFILL_ATTENTION_PRECISION) * ATTENTION_EFFICIENCY
        w = _weights(cfg)
        layers = m.layers / pp
        moe_layers = m.moe_layers / pp
        dense_layers = layers - moe_layers
        self.layers, self.moe_layers, self.dense_layers = layers, moe_layers, dense_layers
        # dense GEMMs: weights streamed once per micro-batch; FLOPs per token
        self.dense_mem = (w.attention + w.dense + w.head) / (hbm * HBM_EFFICIENCY)
        dense_mlp = (m.layers - m.moe_layers) * m.dense_mlp_params + m.moe_layers * m.shared_experts * m.expert_params
        self.attn_proj = 2.0 * layers * m.attn_params / peak           # per attention token on this GPU
        self.dense_tok = 2.0 * dense_mlp / pp / tp / peak               # per token of the micro-batch
        self.head_tok = 2.0 * m.vocab * m.hidden / pp / peak            # per logit token x this GPU's share
        # routed experts
        if m.is_moe:
            imbalance = MOE_IMBALANCE if cfg.ep > 1 else 1.0
            narrow = min(1.0, m.efn / (tp // cfg.ep) / EXPERT_SLICE_MIN_COLUMNS)
            self.routed_tok = 2.0 * moe_layers * m.active_experts * m.expert_params / tp * imbalance / (
                peak * MOE_GEMM_EFFICIENCY * narrow)
            self.moe_mem = w.experts / (hbm * HBM_EFFICIENCY * MOE_GEMM_EFFICIENCY)
            self.moe_miss = 1.0 - m.active_experts / m.experts
            self.moe_act_tok = moe_layers * m.active_experts / tp * imbalance * (
                m.hidden * MOE_HIDDEN_PASSES + m.efn * MOE_INNER_PASSES) * ACTIVATION_BYTES / (hbm * HBM_EFFICIENCY)
        else:
            self.routed_tok = self.moe_mem = self.moe_miss = self.moe_act_tok = 0.0
        # attention: decoding sequences spread evenly over the attention groups
        kv_share = 1.0 / tp / (ATTENTION_DP_BALANCE if cfg.attention_dp else 1.0)
        kv_token = m.kv_bytes_per_token(_bytes(cfg.kv_prec)) / pp * _kv_replication(cfg) * kv_share
        self.kv_mem_tok = kv_token / (hbm * ATTENTION_HBM_EFFICIENCY)
        self.kv_cmp_tok = _decode_attention_flops(m) / pp * kv_share / bf16
        self.pre_unit = m.attention_flops_per_token(1.0) / pp / bf16    # per (query x context) token, whole group
        # element-wise kernels outside the GEMMs: residual stream and norms on
        # every GPU of the tensor-parallel group, gated activation on its slice
        self.ew_hidden = layers * m.hidden * ELEMENTWISE_HIDDEN_PASSES * ACTIVATION_BYTES / (hbm * HBM_EFFICIENCY)
        inner = (dense_layers * m.ffn + moe_layers * m.shared_experts * m.efn) / tp
        self.ew_inner = inner * ELEMENTWISE_INNER_PASSES * ACTIVATION_BYTES / (hbm * HBM_EFFICIENCY)
        self.layer_s = layers * LAYER_OVERHEAD_S
        # collectives, memoised by token count
        self.act_bytes = m.hidden * ACTIVATION_BYTES
        self.disp_bytes = m.hidden * DISPATCH_BYTES.get(cfg.precision, ACTIVATION_BYTES)
        self.lv_tp = _levels(cfg, tp) if tp > 1 else ()
        self.lv_pp = _levels(cfg, pp, tp) if pp > 1 else ()
        self.comm_memo: dict = {}
        self.p2p_memo: dict = {}

    def comm(self, tokens: float) -> float:
        """Collectives of one micro-batch of `tokens` tokens through one stage."""
        t = self.comm_memo.get(tokens)
        if t is None:
            if len(self.comm_memo) >= _MEMO_LIMIT:
                self.comm_memo.clear()
            t = self.comm_memo[tokens] = self._comm(tokens)
        return t

    def _comm(self, tokens: float) -> float:
        if self.tp <= 1 or tokens <= 0:
            return 0.0
        lv = self.lv_tp
        act = tokens * self.act_bytes
        if not self.adp:
            # attention output and MLP output all-reduced in every layer; with
            # experts spread over ep of the GPUs every GPU already holds every
            # token, runs its own experts on the tokens routed to them, and the
            # MLP all-reduce sums the experts' outputs: no dispatch needed
            return 2 * self.layers * (collective_time("all_reduce", act, lv, in_network=True) + TP_COLLECTIVE_OVERHEAD_S)
        # attention data parallel: each GPU holds tokens/tp; dense MLPs gather
        # the tokens and scatter the results; MoE layers dispatch and combine
        # (every GPU gathers all tokens, quantised, for its experts and the
        # partial outputs are reduce-scattered back in BF16)
        gather_scatter = (collective_time("all_gather", act, lv) + collective_time("reduce_scatter", act, lv)
                          + 2 * TP_COLLECTIVE_OVERHEAD_S)
        t = self.dense_layers * gather_scatter
        if self.moe:
            t += self.moe_layers * (collective_time("all_gather", tokens * self.disp_bytes, lv)
                                    + collective_time("reduce_scatter", act, lv) + 2 * TP_COLLECTIVE_OVERHEAD_S)
        return t

    def p2p(self, tokens: float) -> float:
        """Pipeline hand-off of one micro-batch's activations to the next stage."""
        t = self.p2p_memo.get(tokens)
        if t is None:
            if len(self.p2p_memo) >= _MEMO_LIMIT:
                self.p2p_memo.clear()
            msg = tokens * self.act_bytes * self.inv_tp
            t = self.p2p_memo[tokens] = collective_time("send_recv", msg, self.lv_pp) if self.lv_pp else 0.0
        return t


def _profile(cfg: ServingConfig) -> _Profile:
    """The replica profile of `cfg`, built on first use and kept on the config."""
    p = cfg.__dict__.get("_profile")
    if p is None:
        p = _Profile(cfg)
        object.__setattr__(cfg, "_profile", p)
    return p


def _evaluate(p: _Profile, prefill_tokens: float, prefill_attn_ctx: float, decode_seqs: float,
              decode_kv_tokens: float, prefill_seqs: float, chunk: float, parts: bool = False):
    """One iteration of the replica profiled by `p`: its seconds, or (seconds,
    breakdown dict) with `parts`. prefill_attn_ctx is the sum over prefill
    tokens of the context each attends to; `chunk` is the largest piece of
    prefill that must run on one attention group (one prompt's chunk).

    The pp micro-batches each pass every stage, so every stage works pp times
    per iteration; all token counts below are one micro-batch's."""
    pp, mb, tp = p.pp, p.mb, p.tp
    pre = prefill_tokens * mb
    dec = decode_seqs * mb
    tokens = pre + dec
    logits = (decode_seqs + prefill_seqs) * mb
    if p.adp:
        # the busiest attention group sets the pace: at least the mean over the
        # balance ratio, at least a whole prompt chunk (prompts are not split
        # across attention groups) plus its share of the decodes
        busiest = max(prefill_tokens / tp, min(prefill_tokens, chunk)) * mb if prefill_tokens > 0 else 0.0
        attn_tokens = max(tokens / tp / ATTENTION_DP_BALANCE, busiest + dec / tp)
        head_share = attn_tokens / tokens if tokens > 0 else 0.0
        pre_share = max(busiest / pre, p.inv_tp / ATTENTION_DP_BALANCE) if pre > 0 else 0.0
        ew = p.ew_hidden * attn_tokens + p.ew_inner * tokens
    else:
        attn_tokens = tokens * p.inv_tp
        head_share = pre_share = p.inv_tp
        ew = (p.ew_hidden + p.ew_inner) * tokens
    # dense GEMMs (attention projections, dense MLPs, shared experts, head)
    dense_cmp = p.attn_proj * attn_tokens + p.dense_tok * tokens + p.head_tok * logits * head_share
    dense = math.sqrt(p.dense_mem * p.dense_mem + dense_cmp * dense_cmp) if tokens > 0 else 0.0
    # routed experts: the experts the tokens reach, routed FLOPs, permutes
    moe = moe_cmp = moe_mem = 0.0
    if p.moe and tokens > 0:
        moe_cmp = p.routed_tok * tokens
        moe_mem = p.moe_mem * (1.0 - p.moe_miss ** tokens)
        moe = math.sqrt(moe_mem * moe_mem + moe_cmp * moe_cmp) + p.moe_act_tok * tokens
    # attention: decode reads every cached token's KV; prefill is compute
    kv = decode_kv_tokens * mb
    a_mem, a_cmp = p.kv_mem_tok * kv, p.kv_cmp_tok * kv
    attn_dec = math.sqrt(a_mem * a_mem + a_cmp * a_cmp)
    attn_pre = p.pre_unit * prefill_attn_ctx * mb * pre_share
    comm = p.comm(tokens) if tp > 1 else 0.0
    layer_s = p.layer_s if tokens > 0 else 0.0
    p2p = p.p2p(tokens) if pp > 1 else 0.0
    stage = dense + moe + attn_dec + attn_pre + comm + ew + layer_s + p2p
    overhead = ITERATION_OVERHEAD_S + PER_SEQUENCE_OVERHEAD_S * (decode_seqs + prefill_seqs) / p.groups
    it = pp * stage + overhead
    if not parts:
        return it
    return it, {"dense_gemm_s": pp * dense, "dense_gemm_compute_s": pp * dense_cmp,
                "dense_gemm_memory_s": pp * p.dense_mem if tokens > 0 else 0.0,
                "moe_gemm_s": pp * moe, "moe_gemm_compute_s": pp * moe_cmp, "moe_gemm_memory_s": pp * moe_mem,
                "attention_decode_s": pp * attn_dec, "attention_prefill_s": pp * attn_pre,
                "communication_s": pp * comm, "elementwise_s": pp * ew, "pipeline_s": pp * p2p,
                "overhead_s": overhead + pp * layer_s}


def _check_counts(**counts):
    for name, v in counts.items():
        if v is None or v < 0 or v != v:
            raise InputError(f"{name} must be >= 0, got {v!r}", name, "give a token or sequence count >= 0")


def _counts_ok(*values) -> bool:
    try:
        for v in values:
            if not v >= 0:
                return False
    except TypeError:
        return False
    return True


def prefill_time(cfg: ServingConfig, new_tokens: int, cached_context: int = 0, seqs: int = 1) -> float:
    """Seconds to prefill `new_tokens` (spread evenly over `seqs` sequences,
    each with `cached_context` tokens already in the KV cache), in one
    iteration with nothing else."""
    if not _counts_ok(new_tokens, cached_context, seqs):
        _check_counts(new_tokens=new_tokens, cached_context=cached_context, seqs=seqs)
    if new_tokens <= 0:
        return 0.0
    seqs = max(1, int(seqs))
    n = new_tokens / seqs
    ctx = seqs * (n * cached_context + n * (n + 1) / 2.0)
    return _evaluate(_profile(cfg), float(new_tokens), float(ctx), 0.0, 0.0, float(seqs), float(n))


def decode_step_time(cfg: ServingConfig, batch: int, context_tokens_total: int) -> float:
    """One decode iteration for `batch` sequences holding
    `context_tokens_total` tokens of KV in all."""
    if not _counts_ok(batch, context_tokens_total):
        _check_counts(batch=batch, context_tokens_total=context_tokens_total)
    if batch <= 0:
        return 0.0
    return _evaluate(_profile(cfg), 0.0, 0.0, float(batch), float(context_tokens_total), 0.0, 0.0)


def iteration_time(cfg: ServingConfig, prefill_tokens: int, prefill_context: int, decode_batch: int,
                   decode_context_total: int, prefill_seqs: int = 1) -> float:
    """One continuous-batching iteration: `prefill_tokens` chunked-prefill
    tokens (from `prefill_seqs` sequences) attending on average to
    `prefill_context` tokens each (cached prefix plus the causal half of the
    chunk), plus one token for each of `decode_batch` sequences that hold
    `decode_context_total` KV tokens in all."""
    if not _counts_ok(prefill_tokens, prefill_context, decode_batch, decode_context_total, prefill_seqs):
        _check_counts(prefill_tokens=prefill_tokens, prefill_context=prefill_context, decode_batch=decode_batch,
                      decode_context_total=decode_context_total, prefill_seqs=prefill_seqs)
    if prefill_tokens <= 0:
        if decode_batch <= 0:
            return 0.0
        return _evaluate(_profile(cfg), 0.0, 0.0, float(decode_batch), float(decode_context_total), 0.0, 0.0)
    seqs = float(max(1, prefill_seqs))
    return _evaluate(_profile(cfg), float(prefill_tokens), float(prefill_tokens) * float(prefill_context),
                     float(decode_batch), float(decode_context_total), seqs, float(prefill_tokens) / seqs)


def iteration_breakdown(cfg: ServingConfig, prefill_tokens: int, prefill_context: int, decode_batch: int,
                        decode_context_total: int, prefill_seqs: int = 1) -> dict:
    """Seconds per part of the iteration ``iteration_time`` prices (the
    `*_compute_s` and `*_memory_s` entries detail their kernel class and are
    not added again)."""
    _check_counts(prefill_tokens=prefill_tokens, prefill_context=prefill_context, decode_batch=decode_batch,
                  decode_context_total=decode_context_total, prefill_seqs=prefill_seqs)
    if prefill_tokens <= 0 and decode_batch <= 0:
        return {}
    seqs = float(max(1, prefill_seqs)) if prefill_tokens > 0 else 0.0
    chunk = float(prefill_tokens) / seqs if seqs else 0.0
    return _evaluate(_profile(cfg), float(prefill_tokens), float(prefill_tokens) * float(prefill_context),
                     float(decode_batch), float(decode_context_total), seqs, chunk, parts=True)[1]


def kv_transfer_time(cfg: ServingConfig, tokens: int, levels: Sequence[Level]) -> float:
    """Disaggregated serving: seconds to move `tokens` tokens of KV cache
    from a prefill replica to a decode replica over `levels` (each GPU sends
    its shard in parallel; NVLink when `levels` is empty)."""
    _check_counts(tokens=tokens)
    if tokens <= 0:
        return 0.0
    per_gpu = tokens * memory_plan(cfg).kv_bytes_per_token / replica_gpus(cfg)
    if not levels:
        return per_gpu / cfg.gpu.nvlink_bw_Bps
    return collective_time("send_recv", per_gpu, levels)


# ---------------------------------------------------------------------------
# Steady state
# ---------------------------------------------------------------------------
def _blocks(tokens: float) -> float:
    return math.ceil(tokens / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


def batch_limit(cfg: ServingConfig) -> int:
    """Sequences the scheduler admits at most (all attention groups)."""
    return (cfg.max_batch or DEFAULT_MAX_BATCH) * cfg.groups


def max_batch(cfg: ServingConfig, input_tokens: int, output_tokens: int, samples: int = 1) -> int:
    """Largest number of decoding sequences the KV cache holds when each
    request reserves its prompt once plus `samples` outputs, capped by the
    scheduler's batch limit."""
    plan = memory_plan(cfg)
    per_request = _blocks(input_tokens) + samples * _blocks(output_tokens)
    per_group = plan.kv_capacity_tokens / cfg.groups
    fit = int(per_group // per_request) * samples * cfg.groups
    return max(0, min(fit, batch_limit(cfg)))


def _steady(cfg: ServingConfig, batch: int, I: int, O: int, samples: int) -> dict:
    """Steady state of continuous batching with `batch` decoding sequences:
    per O-token generation cycle every sequence decodes O tokens and B/n
    new prompts of I tokens are prefilled in chunks of <= max_num_tokens."""
    B = float(batch)
    M = float(cfg.max_num_tokens) * cfg.groups
    new_requests = B / samples                   # per cycle of O decode steps
    iters = max(float(O), (B * O + new_requests * I) / M)
    dec = B * O / iters                          # decoding sequences per iteration (mean)
    pre = new_requests * I / iters               # prefill tokens per iteration (mean)
    chunk = float(min(I, cfg.max_num_tokens))
    pre_seqs = pre / chunk if pre > 0 else 0.0
    kv_dec = dec * (I + (O + 1) / 2.0)
    ctx_pre = pre * (I + 1) / 2.0
    it, parts = _evaluate(_profile(cfg), pre, ctx_pre, dec, kv_dec, pre_seqs, chunk, parts=True)
    cycle = iters * it
    return {"iteration_s": it, "tokens_per_s": B * O / cycle, "tpot_s": cycle / O, "parts": parts,
            "prefill_per_iter": pre, "decode_per_iter": dec, "iters_per_cycle": iters}


def _ttft(cfg: ServingConfig, I: int, st: dict) -> float:
    """Admission to first token with the engine in steady state: the prompt
    is prefilled in chunks of what the token budget leaves after the
    decoding sequences, then half an iteration of waiting to be scheduled."""
    room = max(1.0, cfg.max_num_tokens - st["decode_per_iter"] / cfg.groups)
    chunks = max(1, math.ceil(I / room))
    return (chunks + 0.5) * st["iteration_s"]


@lru_cache(maxsize=65536)
def estimate(cfg: ServingConfig, input_tokens: int, output_tokens: int, ttft_slo: Optional[float] = None,
             tpot_slo: Optional[float] = None, samples: int = 1) -> ServingEstimate:
    """Throughput and latency of one replica on uniform requests of
    `input_tokens` in and `output_tokens` out (x `samples` answers sharing the
    prompt's KV prefix). Without SLOs: maximum offline throughput. With SLOs
    (seconds): the best throughput whose TTFT and TPOT meet them; SLOs that
    cannot be met even at batch 1 raise InputError."""
    I, O, n = int(input_tokens), int(output_tokens), int(samples)
    if I < 1 or O < 1:
        raise InputError(f"input and output tokens must be >= 1 (got {input_tokens}, {output_tokens})",
                         "--input-tokens/--output-tokens", "give positive token counts")
    if n < 1:
        raise InputError(f"samples must be >= 1, got {samples}", "--samples", "give 1 or more")
    for name, v in (("ttft_slo", ttft_slo), ("tpot_slo", tpot_slo)):
        if v is not None and not v > 0:
            raise InputError(f"{name} must be > 0 seconds, got {v!r}", f"--{name.replace('_', '-')}",
                             "give a positive duration such as 2s or 50ms")
    if I + O > cfg.model.max_seq:
        raise InputError(f"{I} input + {O} output tokens exceed the {cfg.model.max_seq}-token context of "
                         f"{cfg.model.name}", "--input-tokens/--output-tokens",
                         "shorten the request or pick a longer-context model")
    plan = memory_plan(cfg)
    bmax = max_batch(cfg, I, O, n)
    if bmax < 1:
        need = (_blocks(I) + n * _blocks(O)) * plan.kv_bytes_per_token
        raise InputError(f"one request's KV cache ({need / 2**30:.2f} GiB) exceeds the KV pool of an attention "
                         f"group ({plan.kv_cache_bytes / cfg.groups / 2**30:.2f} GiB)", f"{I}+{O} tokens",
                         "use more GPUs per replica, a lower --kv-precision, or shorter requests")
    slo = ttft_slo is not None or tpot_slo is not None

    def at(b: int):
        st = _steady(cfg, b, I, O, n)
        ttft = _ttft(cfg, I, st)
        good = (tpot_slo is None or st["tpot_s"] <= tpot_slo) and (ttft_slo is None or ttft <= ttft_slo)
        return good, st, ttft

    batch = bmax
    good, st, ttft = at(batch)
    limited = "max_batch" if bmax == batch_limit(cfg) else "kv_cache"
    if slo and not good:
        ok1, st1, ttft1 = at(1)
        if not ok1:
            raise InputError(f"the SLOs cannot be met even one request at a time (TTFT {ttft1:.3g} s, "
                             f"TPOT {st1['tpot_s']:.3g} s)", "--ttft-slo/--tpot-slo",
                             "relax the SLOs, or use faster GPUs or more tensor parallelism")
        lo, hi = 1, bmax
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if at(mid)[0]:
                lo = mid
            else:
                hi = mid
        batch = lo
        good, st, ttft = at(batch)
        limited = "slo"
    tps = st["tokens_per_s"] * (SERVER_LOAD_MARGIN if slo else 1.0)
    kv_used = batch / n * (I + n * (O + 1) / 2.0) * plan.kv_bytes_per_token
    rps = tps / (O * n)
    return ServingEstimate(
        output_tokens_per_s=tps, requests_per_s=rps, ttft_s=ttft, tpot_s=st["tpot_s"], batch_size=batch,
        kv_cache_bytes=kv_used, memory_per_gpu_bytes=plan.memory_per_gpu_bytes,
        e2e_latency_s=ttft + st["tpot_s"] * (O - 1), input_tokens_per_s=rps * I, iteration_s=st["iteration_s"],
        limited_by=limited, breakdown=dict(st["parts"]))


def replicas_needed(cfg: ServingConfig, requests_per_s: float, input_tokens: int, output_tokens: int,
                    ttft_slo: Optional[float] = None, tpot_slo: Optional[float] = None, samples: int = 1) -> int:
    """Replicas of `cfg` that serve `requests_per_s` within the SLOs."""
    if requests_per_s is None or requests_per_s != requests_per_s or requests_per_s < 0:
        raise InputError(f"requests_per_s must be >= 0, got {requests_per_s!r}", "requests_per_s",
                         "give a request rate >= 0")
    if requests_per_s == 0:
        return 0
    est = estimate(cfg, max(1, int(round(input_tokens))), max(1, int(round(output_tokens))), ttft_slo, tpot_slo,
                   max(1, int(samples)))
    return max(1, math.ceil(requests_per_s / est.requests_per_s - 1e-9))


# ---------------------------------------------------------------------------
# Layout search
# ---------------------------------------------------------------------------
def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def layouts(model: ModelSpec, gpu: GPU, system: System, gpus: int, tp: Optional[int] = None,
            pp: Optional[int] = None, ep: Optional[int] = None, attention_dp: Optional[bool] = None) -> list[dict]:
    """Replica layouts for `gpus` GPUs (replicas x tp x pp = gpus; tp
    inside an NVLink domain); given fields are kept fixed. MoE models try
    expert parallelism over tp and attention data parallelism too."""
    out = []
    for t in ([tp] if tp else _divisors(gpus)):
        if t > system.nvlink_domain_gpus or gpus % t:
            continue
        for p in ([pp] if pp else _divisors(gpus // t)):
            if gpus % (t * p) or p > model.layers:
                continue
            eps = [ep] if ep else ([1] + ([t] if t > 1 and model.experts % t == 0 else []) if model.is_moe else [1])
            for e in eps:
                if e > t or t % e:
                    continue
                # attention data parallelism is an opt-in engine mode (TensorRT-LLM
                # enable_attention_dp, vLLM data-parallel attention): searched only when asked
                adps = [attention_dp] if attention_dp is not None else [False]
                for a in adps:
                    if a and t == 1:
                        continue
                    out.append({"tp": t, "pp": p, "ep": e, "attention_dp": a})
    return out


def best_layout(model: ModelSpec, gpu: GPU, system: System, fabric: Fabric, gpus: int, precision: str,
                input_tokens: int, output_tokens: int, ttft_slo: Optional[float] = None,
                tpot_slo: Optional[float] = None, samples: int = 1, tp: Optional[int] = None,
                pp: Optional[int] = None, ep: Optional[int] = None, attention_dp: Optional[bool] = None,
                kv_precision: Optional[str] = None, max_batch: Optional[int] = None,
                max_num_tokens: int = 8192) -> tuple[ServingConfig, ServingEstimate, int]:
    """The layout of `gpus` GPUs (replicas of tp x pp) with the highest total
    output throughput, as a benchmark submitter would pick it. Returns
    (config, per-replica estimate, replicas). InputError if none fits, with
    the need vs capacity of the roomiest layout."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise InputError(f"gpus must be a whole number >= 1, got {gpus!r}", "--gpus", "give 1 or more GPUs")
    options = layouts(model, gpu, system, gpus, tp, pp, ep, attention_dp)
    if not options:
        raise InputError(f"no layout of {gpus} GPUs matches tp={tp} pp={pp} ep={ep}", "--gpus/--tp/--pp/--ep",
                         "make --gpus a multiple of tp x pp, with tp within one NVLink domain "
                         f"({system.nvlink_domain_gpus} GPUs on {system.name})")
    best, last_error = None, None
    for lay in options:
        try:
            cfg = ServingConfig(model, gpu, system, fabric, precision=precision, kv_precision=kv_precision,
                                max_batch=max_batch, max_num_tokens=max_num_tokens, **lay)
            est = estimate(cfg, input_tokens, output_tokens, ttft_slo, tpot_slo, samples)
        except InputError as exc:
            if last_error is None or replica_gpus_of(lay) >= last_error[0]:
                last_error = (replica_gpus_of(lay), exc)
            continue
        replicas = gpus // replica_gpus(cfg)
        total = est.output_tokens_per_s * replicas
        if best is None or total > best[0] * (1 + 1e-9):
            best = (total, cfg, est, replicas)
    if best is None:
        raise last_error[1]
    return best[1], best[2], best[3]


def replica_gpus_of(layout: dict) -> int:
    return layout["tp"] * layout["pp"]


def default_system(catalog, gpu_name: str) -> System:
    """The catalog's first system built from `gpu_name` (e.g. h100 -> dgx-h100)."""
    for s in catalog.systems.values():
        if s.gpu == gpu_name:
            return s
    raise InputError(f"no system in the catalog is built from GPU {gpu_name!r}", "--gpu",
                     "pick a GPU that a system uses, or give --system")
