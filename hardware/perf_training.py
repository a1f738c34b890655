"""Step time of LLM training and fine-tuning on real hardware, and the
search for the fastest layout that fits.

workloads/training.py says what one step asks of each GPU (kernels with
their shapes, FLOPs and bytes; bytes held). This module prices that work on
a GPU (tensor-core peak, HBM bandwidth) and on the placement's real links
(``hardware.collectives.levels_for_group``: NVLink inside the domain, the
scale-out fabric with its oversubscription outside it), then assembles one
step:

    step = m x (slowest stage's fwd+bwd+recompute per micro-batch, with the
                exposed TP / CP / EP communication)
         + pipeline bubble ((pp - 1) / vpp stage-times for 1F1B /
           interleaved; (pp/2 - 1) x 2/3 for DualPipe)
         + pipeline point-to-point sends on the critical path
         + exposed data-parallel gradient reduction / parameter gathering
         + the optimizer update.

Layers are placed on pipeline stages the way Megatron-LM
(--decoder-first/last-pipeline-num-layers) and Llama 3 do: the stages that
also hold the embedding and the output layer get fewer layers when that
balances the pipeline (``_stage_plan``), and memory is checked on the
first, second and last stage with the micro-batches each holds in flight
(``workloads.training.in_flight``).

Outputs (``TrainingEstimate``): step time and its breakdown, tokens/s, MFU
(model FLOPs without recompute, causal attention, over dense BF16 peak; the
Llama 3 paper's convention), hardware TFLOP/s per GPU (FLOPs the kernels
execute, recompute included; Megatron's convention), memory per GPU.

API for the rest of gpusim (all arguments hashable; results cached):

- ``estimate_training(model, gpu, system, fabric, gpus, seq_len=8192,
  global_batch_tokens=None, precision="bf16", parallel=None,
  oversubscription=1.0, kind="pretrain", lora_rank=16, doc_tokens=None,
  packing=True, stack="modern", tiers_spanned=None)`` ->
  ``TrainingEstimate`` (step_time_s, tokens_per_s, mfu, hw_tflops_per_gpu,
  memory_per_gpu_bytes, breakdown, parallelism, ...). ``parallel=None``
  searches for the fastest layout that fits; a ``ParallelConfig`` is
  evaluated as given (InputError if it cannot run or does not fit, stating
  need vs capacity per GPU). Results are cached (LRU, 4,096 entries) on
  every argument, so a simulator can call it per job; a search takes
  ~0.1-0.3 s for dense models, ~1-2 s for large MoE models.
  ``tiers_spanned`` (switch tiers a placement crosses) sets the hop count of
  the network latency; bandwidth loss from oversubscribed tiers comes in
  through ``oversubscription``.
- ``training_time_s(estimate, tokens)``: seconds to train on `tokens`.
- ``estimate_finetune(model, gpu, system, fabric, gpus, tokens, kind="sft"
  or "lora", ...)`` -> (estimate, seconds).
- ``search(setup, gpu, system, fabric, gpus, ..., top=5, fixed={...})``:
  the fastest fitting layouts, best first.

Efficiency factors (each a named constant below, with its source):

| factor | value | what / source |
|---|---|---|
| GEMM_MAMF | A100 bf16 0.859, H100 bf16 0.801, H100/H200 fp8 0.734, B200 bf16 0.776 / fp8 0.763 | best measured matmul FLOP/s over dense peak (Bekman, ml-engineering MAMF table); the tensor-core ceiling is set so the additive roofline t = F/(peak c) + bytes/HBM reproduces it at its best shape (w = 1 there), which makes small or thin GEMMs slower |
| SM_COUNT, GEMM_TILE | 108 / 132 / 148 SMs; 128 x 256 tiles | wave quantization w: a GEMM's output tiles run one per SM per wave, a partial last wave idles SMs (NVIDIA whitepapers; cuBLAS/CUTLASS tile sizes) |
| HBM_EFFICIENCY | 0.85 | streaming kernels' share of HBM bandwidth (nvbandwidth / BabelStream, 85-90%) |
| TENSOR_SUSTAINED | 0.80 | tensor-core rate sustained over a training step vs MAMF: power-limited clocks (A100 HPL clock 1305/1410 MHz) x untuned shapes (~0.9); set in that range to centre the A100 Megatron rows, the same for every GPU |
| FLASH_FWD / FLASH_BWD | 0.80 / 0.70 of the GEMM ceiling | FlashAttention-2 on A100 (Dao 2023), FlashAttention-3 on H100 (Shah et al. 2024) |
| FLASH_HALF_LENGTH | 350 tokens | attention efficiency d / (d + 350) for documents of d tokens (FA2 benchmarks) |
| FLASH1_RELATIVE | 0.6 | FlashAttention-1 / xformers relative to FlashAttention-2 (Dao 2023) |
| KERNEL_GAP_S | 4 us | idle gap per dependent kernel |
| DP_OVERLAP | 1.0 | share of the last backward / first forward that hides gradient reduce-scatter / parameter all-gather (Megatron-core, FSDP) |
| OVERLAP_SLOWDOWN | 0.2 | compute seconds lost per second of communication hidden under it (NCCL holds SMs and HBM bandwidth; overlapped GEMMs 10-30% slower) |
| MOE_IMBALANCE | 1.10 | busiest GPU's expert work over the mean (balanced routing, DeepSeek-V3 Sec. 2.1.2) |
| GEMM_MIN_TILE | 64 | M (tokens) padded to whole 64-row tiles (Hopper wgmma): experts that receive few tokens waste most of their tile |
| EXPERT_LAUNCH_S | 25 us | per-expert GEMM / FP8-quantization launch of Transformer Engine's multi-stream grouped GEMM, exposed after the dropless MoE host sync (TE PR #3134: eight 128-token experts 0.267 ms per-expert vs 0.069 ms in one grouped kernel) |
| MOE_SYNC_S | 3 x 15 us | host-device syncs of a dropless MoE layer's forward (token counts to the host; AMD Primus "Sync-Free MoE" notes) |
| Stack (workloads.training) | per framework | what the software overlaps: TP comm pipelined with GEMMs (exposed max(comm/tp, comm - GEMM time)), CP K/V exchange under attention, share of the MoE all-to-all hidden (modern 0.5, DualPipe 1.0), fp8 dispatch, gradient bytes (fp32 / bf16), pipeline schedule, and efficiency (fsdp-tp-2023 0.82: LLaMA-65B's 380 tokens/s/GPU on 2,048 A100; deepseek-dualpipe 112/132: SMs left to GEMMs) |
| NVLS on Hopper+ | collectives.NVLS_EFFICIENCY | TP all-reduce in the NVSwitch (NVLink SHARP); A100's NVSwitch has none |
| RUN_GOODPUT | 0.90 (sim/validation_training.py) | steady-state share of a whole run's GPU-time (Llama 3: >90% effective training time) |

A MoE layer (workloads.training.layer_work) is priced from its real
pieces: the router GEMM and its softmax / top-k / aux-loss traffic over
the fp32 scores; permute / unpermute and, with several local experts, the
re-sort of received tokens by expert (bytes proportional to tokens x
top-k x hidden); the experts as per-expert GEMMs of the real shape
(tokens per expert = tokens x top-k / experts x EP), sharing waves only
among the GEMMs that run together (4 streams under Transformer Engine,
all of them in a grouped kernel), with their FP8 input casts; each
per-expert launch at EXPERT_LAUNCH_S when the stack's dropless routing
syncs host and device; dispatch and combine all-to-alls (tokens x top-k x
hidden x bytes, forward and backward) plus the per-expert token counts
gathered before each dispatch. Small-expert MoE (Qwen3-30B-A3B: 16 local
experts of 768) is dominated by this non-GEMM work, not by FLOPs.

Communication is modelled as *exposed* (on the critical path) unless named
above as overlapped: TP collectives (2 per layer forward, 2 backward, 2 more
with full recompute; all-gather + reduce-scatter with sequence
parallelism) unless the stack pipelines them with the GEMMs, pipeline
point-to-point sends (except under DualPipe).
"""
from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from hardware.collectives import collective_time, levels_for_group
from workloads.errors import InputError
from workloads.models import ModelSpec
from workloads.training import (get_stack, WEIGHT_BYTES, LayerWork, Memory, Op,
                                ParallelConfig, Setup, check_parallel, check_setup, embed_ops, head_ops,
                                layer_work, lora_params, memory_per_gpu, micro_batches, model_flops_per_token,
                                stage_layers, layer_params)

# ---------------------------------------------------------------------------
# Efficiency factors (see the module docstring's table for sources)
# ---------------------------------------------------------------------------

# (architecture, precision) -> (MAMF: best measured matmul FLOP/s over the
# dense peak, the shape it was measured at (m, n, k), HBM TB/s of that GPU,
# bytes per input element). Source: S. Bekman, ml-engineering, "Maximum
# Achievable Matmul FLOPS comparison table" (mamf-finder.py measurements).
GEMM_MAMF = {
    ("ampere", "bf16"): (0.859, (6912, 16384, 2048), 2.039, 2.0),     # A100 SXM 267.9/312, CUDA 12.1
    ("hopper", "bf16"): (0.801, (6144, 17920, 2816), 3.35, 2.0),      # H100 SXM 792.1/989, CUDA 12.1
    ("hopper", "fp8"): (0.734, (8192, 8192, 8192), 4.8, 1.0),         # H200 SXM 1453/1979 (shape not given: large square)
    ("blackwell", "bf16"): (0.776, (8192, 8192, 8192), 8.0, 2.0),     # B200 SXM 1745/2250
    ("blackwell", "fp8"): (0.763, (8192, 8192, 8192), 8.0, 1.0),      # B200 SXM 3432/4500
}
# Streaming multiprocessors per GPU (A100 108, H100/H800/H200 132, B200
# 148; NVIDIA architecture whitepapers) and the output tile one SM computes
# at a time in cuBLAS/CUTLASS bf16/fp8 GEMMs (128 x 256 on Ampere and Hopper).
SM_COUNT = {"ampere": 108, "hopper": 132, "blackwell": 148}
GEMM_TILE = (128, 256)
# Smallest row tile cuBLAS/CUTLASS use for skinny GEMMs (Hopper's wgmma
# instruction computes 64 rows at a time): a GEMM whose M (tokens; an
# expert's share of them) is not a multiple of it computes the padded rows
# anyway (a 16-token expert GEMM uses a quarter of its tile). N and K are
# weight dimensions, multiples of 64 in the models priced here.
GEMM_MIN_TILE = 64
# Fraction of the HBM bandwidth streaming (elementwise) kernels reach:
# nvbandwidth / BabelStream copy kernels on A100 and H100 reach 85-90%.
HBM_EFFICIENCY = 0.85
# Fraction of the MAMF-derived tensor-core rate sustained over a whole
# training step: power-limited clocks with every GPU of a node busy (A100's
# sustained HPL clock is 1305 of 1410 MHz = 0.93) times untuned training
# shapes and layouts against MAMF's best shape (~0.9). Set within that range
# (0.80) so that the A100-era Megatron rows of sim/data/validation/
# training.csv are centred; the H100-era runs in the README are a check.
TENSOR_SUSTAINED = 0.80
# FlashAttention relative to the GEMM ceiling: FlashAttention-2 on A100
# reaches up to 73% of peak forward and ~63% forward+backward (Dao 2023);
# FlashAttention-3 on H100 75% forward (Shah et al. 2024).
FLASH_FWD = 0.80
FLASH_BWD = 0.70
# Short documents run attention below its long-sequence rate: FA2 causal
# fwd+bwd on A100 at 0.5k/1k/2k/4k tokens reaches 0.56/0.75/0.86/0.93 of its
# 16k rate (Dao 2023, Fig. 4), i.e. d / (d + 350).
FLASH_HALF_LENGTH = 350.0
# FlashAttention-1 / xformers memory-efficient attention (2022-early 2023):
# FlashAttention-2 is 1.7-2x faster on A100 (Dao 2023, Fig. 4-5).
FLASH1_RELATIVE = 0.6
# Idle gap between dependent kernels (launch latency + tail effect), per kernel.
KERNEL_GAP_S = 4.0e-6
# Wall time one per-expert GEMM launch adds beyond its math when the local
# experts run as separate GEMMs (Transformer Engine's GroupedLinear:
# a cuBLASLt call per expert on 4 streams, with per-expert tensor splits,
# allocations and stream events on the host; TE issue #1499 traces the
# gap to these host ops). TE PR #3134 measures eight 128-token experts at
# 0.267 ms on that path against 0.069 ms for one grouped CUTLASS launch:
# (0.267 - 0.069) / 8 = 25 us per expert (B200, NVFP4; the same value is
# used for every GPU: the cost is on the host). Charged per launch (forward and
# each backward GEMM, and per-expert FP8 quantization) when the launches
# follow a host-device sync (dropless MoE, Stack.moe_host_sync), where no
# queued GPU work hides them; otherwise a launch costs KERNEL_GAP_S.
EXPERT_LAUNCH_S = 25.0e-6
# Host-device synchronizations of a dropless MoE layer's forward (token
# counts to the host for the all-to-all splits, the permutation's output
# size and the grouped GEMM's per-expert sizes; AMD Primus-Megatron
# "Sync-Free MoE" design notes): each drains the GPU's queue and costs a
# device-to-host copy plus the next launch, ~15 us (CUDA D2H latency
# ~5-10 us, launch ~5 us). Three per MoE layer forward.
MOE_SYNC_S = 3 * 15.0e-6
# Share of a window that bucketed gradient reduce-scatter (last micro-batch's
# backward) or parameter all-gather (first forward) can hide under
# (Megatron-core --overlap-grad-reduce / --overlap-param-gather; FSDP prefetch).
DP_OVERLAP = 1.0
# Compute running while a collective is hidden under it is slowed: NCCL
# kernels hold SMs (one block per channel, up to 32 channels on 8-rail
# nodes) and HBM bandwidth; GEMMs overlapped with collectives are reported
# 10-30% slower (e.g. Rashidi et al., ISCA 2021). Seconds of compute added
# per second of hidden communication.
OVERLAP_SLOWDOWN = 0.2
# Busiest GPU's expert work over the mean: auxiliary-loss / bias balanced
# routing keeps per-expert load within ~10% at training batch sizes
# (DeepSeek-V3 Sec. 2.1.2; Megatron-core MoE load-balancing reports).
MOE_IMBALANCE = 1.10
# Adam update per parameter: read fp32 master, grad, m, v (16 B), write
# master, m, v (12 B) and the bf16 weight (2 B).
ADAM_BYTES_PER_PARAM = 30.0

SEARCH_MICRO_BATCHES = (1, 2, 4, 8)
SEARCH_VPP = (1, 2, 4, 8)


def _arch(gpu) -> str:
    return (gpu.architecture or "hopper").lower()


def _gemm_key(gpu, precision: str) -> tuple[str, str]:
    arch = _arch(gpu)
    prec = "fp8" if precision in ("fp8", "fp4", "fp6", "int8") else "bf16"
    if (arch, prec) in GEMM_MAMF:
        return arch, prec
    if (arch, "bf16") in GEMM_MAMF:
        return arch, "bf16"
    return "hopper", prec


def wave_efficiency(arch: str, m: float, n: float, batch: float = 1.0) -> float:
    """Share of the SMs busy over a GEMM's waves: the output is cut into
    GEMM_TILE tiles, one per SM at a time; a last, partial wave leaves SMs
    idle (wave quantization). `batch` GEMMs running together (a grouped
    kernel's experts, or the experts on concurrent streams) share waves."""
    sms = SM_COUNT.get(arch, 132)
    tiles = math.ceil(max(1.0, m) / GEMM_TILE[0]) * math.ceil(max(1.0, n) / GEMM_TILE[1]) * max(1, round(batch))
    return tiles / (math.ceil(tiles / sms) * sms)


@lru_cache(maxsize=64)
def gemm_ceiling(arch: str, prec: str) -> float:
    """Tensor-core ceiling (fraction of peak) such that the additive roofline
    t = F / (peak c) + bytes / (HBM x HBM_EFFICIENCY) reproduces the MAMF
    measurement at its best shape (the shapes MAMF finds best are taken to
    fill their waves: cuBLAS picks tiles that do)."""
    frac, (m, n, k), tbps, bpe = GEMM_MAMF[(arch, prec)]
    # intensity in FLOP per byte, and the peak/bandwidth ratio of the reference GPU
    peak_ref = {"ampere": 312e12, "hopper": 989.5e12, "blackwell": 2250e12}[arch] * (2 if prec == "fp8" else 1)
    flops = 2.0 * m * n * k
    nbytes = (m * k + k * n) * bpe + m * n * 2.0
    mem_t = nbytes / (tbps * 1e12 * HBM_EFFICIENCY)
    # frac = flops / peak / (flops / (peak c) + mem_t)  ->  solve for c
    total_t = flops / (peak_ref * frac)
    c = (flops / peak_ref) / max(1e-30, total_t - mem_t)
    return min(1.0, c)


def gemm_time(op: Op, gpu, precision: str) -> float:
    """Seconds of one forward GEMM op (additive roofline, launch overheads)."""
    return gemm_math_time(op, gpu, precision) + launch_time(op)


def gemm_math_time(op: Op, gpu, precision: str) -> float:
    """Seconds of a forward GEMM op's math and memory traffic: additive
    roofline, wave quantization over the GEMMs that run together (all of a
    grouped kernel's, or `wave_group` at a time), no launch overhead."""
    arch, prec = _gemm_key(gpu, op.precision if precision in ("fp8", "fp4") else "bf16")
    peak = gpu.peak_flops(prec if prec in gpu.tflops else "bf16")
    c = gemm_ceiling(arch, prec)
    bpe = 1.0 if prec == "fp8" else 2.0
    nbytes = op.batch * ((op.m * op.k + op.k * op.n) * bpe + op.m * op.n * 2.0)
    group = op.wave_group if op.wave_group > 0 else op.batch
    w = wave_efficiency(arch, op.m, op.n, group) * tile_padding(op.m)
    return op.flops / (peak * c * w * TENSOR_SUSTAINED) + nbytes / (gpu.hbm_bw_Bps * HBM_EFFICIENCY)


def tile_padding(m: float) -> float:
    """Share of the computed rows that are real when M is padded to whole
    GEMM_MIN_TILE tiles (1.0 for the token counts of dense layers; below 1
    for experts that receive only a few tokens)."""
    m = max(1.0, m)
    return m / (math.ceil(m / GEMM_MIN_TILE) * GEMM_MIN_TILE)


def launch_time(op: Op) -> float:
    """Seconds the forward op's kernel launches add: KERNEL_GAP_S each, or
    EXPERT_LAUNCH_S for per-expert launches that follow a host-device sync."""
    if op.launches > 1 and op.after_sync:
        return op.launches * EXPERT_LAUNCH_S
    return op.launches * KERNEL_GAP_S


def attention_time(op: Op, gpu) -> tuple[float, float]:
    """(forward, backward) seconds of a fused (Flash) attention op."""
    arch, prec = _gemm_key(gpu, "bf16")
    rate = gpu.peak_flops("bf16") * gemm_ceiling(arch, prec) * TENSOR_SUSTAINED
    length = op.m / (op.m + FLASH_HALF_LENGTH)
    if op.precision == "flash1":
        rate *= FLASH1_RELATIVE
    fwd = op.flops / (rate * FLASH_FWD * length) + KERNEL_GAP_S
    bwd = op.bwd * op.flops / (rate * FLASH_BWD * length) + 2 * KERNEL_GAP_S
    return fwd, bwd


def mem_time(nbytes: float, gpu) -> float:
    return nbytes / (gpu.hbm_bw_Bps * HBM_EFFICIENCY) + KERNEL_GAP_S


def mem_op_time(op: Op, gpu) -> tuple[float, float]:
    """(streaming seconds, launch seconds) of a memory-bound op's forward."""
    return op.bytes / (gpu.hbm_bw_Bps * HBM_EFFICIENCY), launch_time(op)


@dataclass(frozen=True)
class LayerTime:
    fwd: float
    bwd: float
    recompute: float
    attn: float            # attention kernel time (fwd + bwd), for CP overlap
    flops_exec: float      # FLOPs executed per micro-batch (fwd + bwd + recompute)
    gemm: float
    attention: float
    memory: float


def time_layer(work: LayerWork, gpu, precision: str, recompute: str, expert_scale: float = 1.0,
               efficiency: float = 1.0) -> LayerTime:
    lt = _time_layer(work, gpu, precision, recompute, expert_scale)
    if efficiency == 1.0:
        return lt
    k = 1.0 / efficiency
    return LayerTime(lt.fwd * k, lt.bwd * k, lt.recompute * k, lt.attn * k, lt.flops_exec,
                     lt.gemm * k, lt.attention * k, lt.memory * k)


def _time_layer(work: LayerWork, gpu, precision: str, recompute: str, expert_scale: float = 1.0) -> LayerTime:
    fwd = bwd = rec = attn = flops = 0.0
    g = a = mm = 0.0
    for op in work.ops:
        # the busiest GPU's expert work (MOE_IMBALANCE: the tokens it receives)
        # scales the math and the bytes, not the launches
        scale = expert_scale if op.name.startswith("expert") or op.name == "sort_chunks" else 1.0
        if op.kind == "gemm":
            lf = launch_time(op)
            tf = gemm_math_time(op, gpu, precision) * scale + lf
            tb = op.bwd * tf                    # dgrad + wgrad: their math and their launches
            fl = op.flops * (1.0 + op.bwd)
            g += tf + tb
        elif op.kind == "attn":
            tf, tb = attention_time(op, gpu)
            attn += tf + tb
            fl = op.flops * (1.0 + op.bwd)
            a += tf + tb
        else:
            stream, lf = mem_op_time(op, gpu)
            tf = stream * scale + lf
            tb = op.bwd * stream * scale + lf   # the backward launches as many kernels
            fl = 0.0
            mm += tf + tb
        fwd += tf
        bwd += tb
        flops += fl
        if recompute == "full" or (recompute == "selective" and op.recompute_selective):
            rec += tf
            flops += op.flops
            if op.kind == "gemm":
                g += tf
            elif op.kind == "attn":
                a += tf
            else:
                mm += tf
    # dropless MoE: the forward's host-device syncs leave the GPU idle
    sync = work.host_syncs_fwd * MOE_SYNC_S
    fwd += sync
    mm += sync
    if recompute == "full":
        rec += sync
        mm += sync
    return LayerTime(fwd, bwd, rec, attn, flops, g, a, mm)


# ---------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingEstimate:
    """One training configuration on one placement, steady state."""
    step_time_s: float
    tokens_per_step: float
    tokens_per_s: float
    mfu: float
    hw_tflops_per_gpu: float
    model_tflops_per_gpu: float
    memory_per_gpu_bytes: float
    memory_capacity_bytes: float
    fits: bool
    gpus: int
    parallelism: ParallelConfig
    micro_batches: int
    breakdown: tuple            # ((name, seconds), ...) summing to step_time_s
    memory: tuple               # ((name, bytes), ...)
    model_flops_per_step: float
    global_batch_seqs: int
    seq_len: int
    precision: str
    kind: str

    @property
    def breakdown_dict(self) -> dict:
        return dict(self.breakdown)

    @property
    def memory_dict(self) -> dict:
        return dict(self.memory)

    def as_dict(self) -> dict:
        return {
            "step_time_s": self.step_time_s, "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": self.tokens_per_s, "mfu": self.mfu,
            "hw_tflops_per_gpu": self.hw_tflops_per_gpu, "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "memory_per_gpu_bytes": self.memory_per_gpu_bytes, "memory_capacity_bytes": self.memory_capacity_bytes,
            "fits": self.fits, "gpus": self.gpus, "global_batch_seqs": self.global_batch_seqs,
            "seq_len": self.seq_len, "precision": self.precision, "kind": self.kind,
            "micro_batches": self.micro_batches,
            "parallelism": self.parallelism.as_dict(),
            "breakdown_s": dict(self.breakdown), "memory_bytes": dict(self.memory),
        }


class _Ctx:
    """Per-search caches: layer timings and collective times."""

    def __init__(self, setup: Setup, gpu, system, fabric, oversubscription: float, hops: Optional[int] = None):
        self.setup, self.gpu, self.system, self.fabric = setup, gpu, system, fabric
        self.over = oversubscription
        self.hops = hops
        self.layers: dict = {}
        self.bounds: dict = {}
        self.flops_per_token = model_flops_per_token(setup)
        self.levels: dict = {}
        self.colls: dict = {}
        self.nvls = _arch(gpu) not in ("ampere", "volta")

    def lv(self, group: int, stride: int):
        key = (group, stride)
        if key not in self.levels:
            self.levels[key] = levels_for_group(self.system, self.fabric, self.gpu, group, stride=stride,
                                                oversubscription=self.over, hops=self.hops)
        return self.levels[key]

    def coll(self, op: str, nbytes: float, group: int, stride: int, in_network: bool = False) -> float:
        if group <= 1 or nbytes <= 0:
            return 0.0
        key = (op, nbytes, group, stride, in_network)
        if key not in self.colls:
            self.colls[key] = collective_time(op, nbytes, self.lv(group, stride), in_network=in_network)
        return self.colls[key]

    def boundary(self, p: ParallelConfig) -> tuple[float, float, float]:
        """(output layer + loss seconds, its FLOPs, embedding seconds) per micro-batch."""
        key = (p.tp, p.cp, p.micro_batch, p.sp)
        if key not in self.bounds:
            m, gpu = self.setup.model, self.gpu
            head_t = head_fl = 0.0
            for op in head_ops(m, self.setup, p):
                if op.kind == "gemm":
                    head_t += gemm_time(op, gpu, "bf16") * (1 + op.bwd)
                    head_fl += op.flops * (1 + op.bwd)
                else:
                    head_t += mem_time(op.bytes, gpu) * (1 + op.bwd)
            emb_t = sum(mem_time(op.bytes, gpu) * (1 + op.bwd) for op in embed_ops(m, self.setup, p))
            k = 1.0 / self.setup.stack.efficiency
            self.bounds[key] = (head_t * k, head_fl, emb_t * k)
        return self.bounds[key]

    def memory(self, p: ParallelConfig) -> Memory:
        """Peak memory per GPU, with layers placed on stages as the time
        model places them (first and last stages lighter, see _stage_plan)."""
        m = self.setup.model
        dl = self.layer(False, p) if m.layers > m.moe_layers else None
        ml = self.layer(True, p) if m.moe_layers else None
        stages = None
        if p.pp > 1:
            per, moe_n = stage_layers(m, p)
            per_layer = ((per - moe_n) * _total(dl) + moe_n * _total(ml)) / per
            head_t, _, emb_t = self.boundary(p)
            _, stages = _stage_plan(m.layers, p.pp, per_layer, head_t, emb_t)
        return memory_per_gpu(self.setup, p, dl[0] if dl else None, ml[0] if ml else None, stages)

    def layer(self, moe: bool, p: ParallelConfig):
        key = (moe, p.tp, p.cp, p.ep, p.micro_batch, p.sp, p.recompute)
        if key not in self.layers:
            w = layer_work(self.setup.model, moe, self.setup, p)
            scale = MOE_IMBALANCE if moe else 1.0
            self.layers[key] = (w, time_layer(w, self.gpu, self.setup.precision, p.recompute, scale,
                                              self.setup.stack.efficiency))
        return self.layers[key]


def _layer_comm(ctx: _Ctx, w: LayerWork, lt: LayerTime, p: ParallelConfig) -> tuple[float, float, float, float]:
    """Exposed (tp, cp, ep) seconds of one layer, one micro-batch
    (fwd+bwd+recompute), and the seconds of communication hidden under
    compute (which slows that compute, see OVERLAP_SLOWDOWN)."""
    passes = 2 + (1 if p.recompute == "full" else 0)
    tp = 0.0
    hidden_tp = 0.0
    if w.tp_collectives_fwd and p.tp > 1:
        if p.sp:
            one = ctx.coll("all_gather", w.tp_bytes, p.tp, 1) + ctx.coll("reduce_scatter", w.tp_bytes, p.tp, 1)
        else:
            one = ctx.coll("all_reduce", w.tp_bytes, p.tp, 1, in_network=ctx.nvls)
        tp = one * w.tp_collectives_fwd * passes
        if ctx.setup.stack.tp_overlap:
            # pipelined with the layer's GEMMs: one of tp chunks stays
            # exposed, and whatever the GEMMs are too short to cover
            exposed = max(tp / p.tp, tp - lt.gemm)
            hidden_tp = tp - exposed
            tp = exposed
    cp = 0.0
    hidden = 0.0
    if p.cp > 1 and w.cp_bytes > 0:
        gathered = w.cp_bytes * p.cp / (p.cp - 1)
        ag = ctx.coll("all_gather", gathered, p.cp, p.tp)
        comm = ag * (1 + 2 + (1 if p.recompute == "full" else 0))   # fwd gather; bwd gather + reduce-scatter of dK,dV
        cp = max(0.0, comm - lt.attn) if ctx.setup.stack.cp_overlap else comm
        hidden += comm - cp
    hidden += hidden_tp
    ep = 0.0
    if w.ep_a2a_fwd and p.ep > 1:
        one = ctx.coll("all_to_all", w.ep_bytes, p.ep, 1)
        total = one * w.ep_a2a_fwd * passes
        stack = ctx.setup.stack
        # the hidden share cannot exceed the compute it hides under
        ep = max((1.0 - stack.ep_overlap) * total, total - (lt.fwd + lt.bwd + lt.recompute))
        if stack.schedule != "dualpipe":
            hidden += total - ep      # DualPipe's reserved SMs are in its stack efficiency
        if w.host_syncs_fwd:
            # the token counts gathered before each dispatch (latency-bound,
            # on the critical path: the dispatch waits for them)
            fwd_passes = 1 + (1 if p.recompute == "full" else 0)
            ep += fwd_passes * ctx.coll("all_gather", w.ep_count_bytes, p.ep, 1)
    return tp, cp, ep, hidden


def _stage_plan(layers: int, pp: int, per_layer: float, head: float, emb: float) -> tuple[float, tuple[int, int, int]]:
    """(time of the fullest stage, (first, middle, last) layer counts) when
    whole layers are spread over `pp` stages and the first stage also runs
    the embedding, the last the output layer and loss: the smallest k x
    per_layer for which the stages can hold every layer, the first and last
    stages taking fewer layers (Llama 3 Sec. 3.3.2; Megatron-LM
    --decoder-first/last-pipeline-num-layers); else ceil(L/pp) layers plus
    the output layer."""
    k0 = math.ceil(layers / pp)
    if pp == 1:
        return layers * per_layer + head + emb, (layers, layers, layers)
    best = k0 * per_layer + max(head, emb)
    for k in range(max(1, k0 - 1), k0 + 1):
        cap_t = k * per_layer
        if cap_t < head or cap_t < emb:
            continue
        last = min(k, math.floor((cap_t - head) / per_layer + 1e-9))
        first = min(k, math.floor((cap_t - emb) / per_layer + 1e-9))
        if (pp - 2) * k + last + first >= layers and cap_t <= best:
            return cap_t, _fill(layers, [first] + [k] * (pp - 2) + [last])
    return best, _fill(layers, [k0] * pp)


def _fill(layers: int, caps: list) -> tuple[int, int, int]:
    """(first, second, last) stage layer counts: every stage up to its
    capacity, the surplus taken off the first stage, then the last, then
    the middle ones from the end (the first stages hold the most
    activations)."""
    counts = list(caps)
    surplus = sum(counts) - layers
    for i in [0, len(counts) - 1] + list(range(len(counts) - 2, 0, -1)):
        take = min(surplus, counts[i])
        counts[i] -= take
        surplus -= take
    return counts[0], counts[1], counts[-1]


def _evaluate(ctx: _Ctx, p: ParallelConfig, mem: Optional[Memory] = None) -> TrainingEstimate:
    setup, gpu = ctx.setup, ctx.gpu
    m = setup.model
    per, moe_n = stage_layers(m, p)
    dense_n = per - moe_n
    m_count = micro_batches(setup, p)

    # one micro-batch, fwd + bwd (+ recompute), per stage kind
    def stage(n_dense: int, n_moe: int):
        comp = gemm = att = memb = rec = 0.0
        tp = cp = ep = 0.0
        fl = 0.0
        bwd_t = 0.0
        for moe, n in ((False, n_dense), (True, n_moe)):
            if not n:
                continue
            w, lt = ctx.layer(moe, p)
            c_tp, c_cp, c_ep, c_hidden = _layer_comm(ctx, w, lt, p)
            comp += n * (lt.fwd + lt.bwd + lt.recompute + OVERLAP_SLOWDOWN * c_hidden)
            gemm += n * lt.gemm
            att += n * lt.attention
            memb += n * lt.memory
            rec += n * lt.recompute
            bwd_t += n * (lt.bwd + lt.recompute)
            tp += n * c_tp
            cp += n * c_cp
            ep += n * c_ep
            fl += n * lt.flops_exec
        return comp, tp, cp, ep, fl, bwd_t, gemm, att, memb, rec

    body = stage(dense_n, moe_n)
    head_t, head_fl, emb_t = ctx.boundary(p)
    stage_body = body[0] + body[1] + body[2] + body[3]
    if p.pp == 1:
        t_max = stage_body + head_t + emb_t
        t_avg = t_max
        boundary = head_t + emb_t
    else:
        # layers are assigned so that the stages holding the embedding and the
        # output layer get fewer of them (Llama 3 Sec. 3.3.2; Megatron-LM
        # --decoder-first/last-pipeline-num-layers): the fullest stage holds
        # the whole work rounded up to whole layers
        per_layer = stage_body / per
        t_avg = (m.layers * per_layer + head_t + emb_t) / p.pp
        t_max, _ = _stage_plan(m.layers, p.pp, per_layer, head_t, emb_t)
        boundary = max(0.0, t_max - stage_body) if t_max > stage_body else 0.0
        if t_max < stage_body:
            # balanced: the fullest stage has fewer layers than ceil(L/pp)
            scale = t_max / stage_body
            body = tuple(x * scale for x in body)
            boundary = 0.0
    # per-GPU executed FLOPs per micro-batch (average stage)
    total_layer_fl = 0.0
    for moe, n in ((False, m.layers - m.moe_layers), (True, m.moe_layers)):
        if n:
            total_layer_fl += n * ctx.layer(moe, p)[1].flops_exec
    fl_mb = (total_layer_fl + head_fl) / p.pp

    steady = m_count * t_max
    if p.pp == 1:
        bubble = 0.0
    elif setup.stack.schedule == "dualpipe":
        # (pp/2 - 1)(F&B + B - 3W) with F = t/3, B = 2t/3, W = B/2 and the
        # overlapped F&B chunk as long as F + B: (pp/2 - 1) x 2/3 stage-times
        bubble = max(0.0, p.pp / 2.0 - 1.0) * (2.0 / 3.0) * t_avg
    else:
        bubble = (p.pp - 1) / p.vpp * t_avg
    # pipeline sends: activations of one micro-batch (forward) and their
    # gradients (backward), once per chunk boundary; on the critical path
    stack = setup.stack
    p2p = 0.0
    if p.pp > 1:
        nbytes = p.micro_batch * setup.seq_len / p.cp * m.hidden * 2.0
        stride = p.tp * p.cp * p.dp
        if stack.p2p_scatter_gather or (p.sp and p.tp > 1):
            send = ctx.coll("send_recv", nbytes / p.tp, 2, stride)
            if p.tp > 1 and not p.sp:
                send += ctx.coll("all_gather", nbytes, p.tp, 1)
        else:
            send = ctx.coll("send_recv", nbytes, 2, stride)
        p2p = 2.0 * (m_count * p.vpp + p.pp - 1) * send
        if stack.schedule == "dualpipe":
            p2p = 0.0      # DualPipe overlaps the sends with the other direction's compute

    # data-parallel gradient reduction and parameter gathering
    etp = 1 if p.ep > 1 else p.tp
    dense_params = dense_n * layer_params(m, False)[0] / p.tp if dense_n else 0.0
    expert_params = 0.0
    if moe_n:
        d, e = layer_params(m, True)
        dense_params += moe_n * d / p.tp
        expert_params = moe_n * e / (p.ep * etp)
    dense_params += m.vocab * m.hidden / p.tp
    if setup.kind == "lora":
        dense_params = lora_params(m, setup.lora_rank) / p.pp / p.tp
        expert_params = 0.0
    dpg = p.dp * p.cp
    edp = max(1, p.dp * p.cp * p.tp // (p.ep * etp))
    # the expert data-parallel group strides over whole EP groups
    estride = p.ep * etp if p.ep > 1 else p.tp

    def both(op: str, per_param_bytes: float) -> float:
        return (ctx.coll(op, dense_params * per_param_bytes, dpg, p.tp) +
                ctx.coll(op, expert_params * per_param_bytes, edp, estride))

    ov = DP_OVERLAP if stack.dp_overlap else 0.0
    last_bwd = body[5] / p.vpp
    first_fwd = (body[0] - body[5]) / p.vpp
    if p.zero == 0:
        total = both("all_reduce", stack.grad_bytes)
        dp_exposed = max(0.0, total - ov * last_bwd)
    elif p.zero in (1, 2):
        grad_t = both("reduce_scatter", stack.grad_bytes)
        gather_t = both("all_gather", WEIGHT_BYTES)
        n_rs = m_count if p.zero == 2 else 1                       # ZeRO-2 reduces every micro-batch
        total = n_rs * grad_t + gather_t
        dp_exposed = max(0.0, grad_t - ov * last_bwd) + (n_rs - 1) * max(0.0, grad_t - ov * body[5])
        dp_exposed += max(0.0, gather_t - ov * first_fwd)
    else:
        # ZeRO-3 / FSDP: gather weights for the forward and again for the
        # backward, reduce-scatter gradients, every micro-batch; prefetched
        # layer by layer under that micro-batch's compute
        per_mb = 2.0 * both("all_gather", WEIGHT_BYTES) + both("reduce_scatter", stack.grad_bytes)
        total = m_count * per_mb
        dp_exposed = m_count * max(0.0, per_mb - max(ov, 0.5) * body[0])
    # compute that runs under hidden DP traffic is slowed (OVERLAP_SLOWDOWN)
    dp_exposed += OVERLAP_SLOWDOWN * max(0.0, total - dp_exposed)
    # optimizer update (memory-bound Adam over this GPU's shard)
    shard = dense_params / (dpg if p.zero >= 1 else 1) + expert_params / (edp if p.zero >= 1 else 1)
    optim = mem_time(shard * ADAM_BYTES_PER_PARAM, gpu) if shard else 0.0

    step = steady + bubble + p2p + dp_exposed + optim
    comp, tp_c, cp_c, ep_c = body[0], body[1], body[2], body[3]
    breakdown = (
        ("compute", m_count * (comp + boundary)),
        ("  gemm", m_count * body[6]),
        ("  attention", m_count * body[7]),
        ("  memory_bound", m_count * body[8]),
        ("  recompute", m_count * body[9]),
        ("  output_and_imbalance", m_count * boundary),
        ("tp_comm", m_count * tp_c),
        ("cp_comm", m_count * cp_c),
        ("ep_comm", m_count * ep_c),
        ("pp_bubble", bubble),
        ("pp_p2p", p2p),
        ("dp_comm", dp_exposed),
        ("optimizer", optim),
    )
    tokens_step = m_count * p.micro_batch * p.dp * setup.seq_len
    useful = tokens_step * setup.useful_fraction
    model_fl = ctx.flops_per_token * useful
    peak = gpu.peak_flops("bf16")
    gpus = p.gpus
    if mem is None:
        mem = ctx.memory(p)
    cap = gpu.hbm_bytes
    hw = fl_mb * m_count / step
    return TrainingEstimate(
        step_time_s=step, tokens_per_step=useful, tokens_per_s=useful / step,
        mfu=model_fl / (step * gpus * peak), hw_tflops_per_gpu=hw / 1e12,
        model_tflops_per_gpu=model_fl / (step * gpus) / 1e12,
        memory_per_gpu_bytes=mem.total, memory_capacity_bytes=cap, fits=mem.total <= cap,
        gpus=gpus, parallelism=p, micro_batches=m_count, breakdown=breakdown,
        memory=tuple((k, v) for k, v in mem.as_dict().items() if k != "stage"),
        model_flops_per_step=model_fl, global_batch_seqs=m_count * p.micro_batch * p.dp,
        seq_len=setup.seq_len, precision=setup.precision, kind=setup.kind)


def _fit_error(est: TrainingEstimate, gpu) -> InputError:
    gib = 2**30
    parts = ", ".join(f"{k} {v / gib:.1f}" for k, v in est.memory if k != "total")
    p = est.parallelism
    return InputError(
        f"does not fit: needs {est.memory_per_gpu_bytes / gib:.1f} GiB per GPU, {gpu.name} has "
        f"{est.memory_capacity_bytes / gib:.1f} GiB ({parts} GiB)",
        f"tp={p.tp} pp={p.pp} cp={p.cp} ep={p.ep} dp={p.dp} micro_batch={p.micro_batch} recompute={p.recompute} zero={p.zero}",
        "use more GPUs, larger tp/pp, recompute=full, a higher ZeRO stage, or --search")


def _check_precision(setup: Setup, gpu) -> None:
    """InputError if the GPU has no tensor cores for the training precision."""
    gpu.peak_flops("bf16")
    if setup.precision in ("fp8", "fp4"):
        gpu.peak_flops(setup.precision)


def evaluate(setup: Setup, p: ParallelConfig, gpu, system, fabric, oversubscription: float = 1.0,
             require_fit: bool = True, hops: Optional[int] = None) -> TrainingEstimate:
    """Step time and memory of layout `p` (InputError if it cannot run, or
    with require_fit, if it does not fit)."""
    check_setup(setup)
    check_parallel(setup.model, p, None, system.nvlink_domain_gpus)
    _check_precision(setup, gpu)
    if p.vpp > 1 and not setup.stack.interleaved:
        raise InputError(f"vpp={p.vpp} but this training stack has no interleaved schedule", "vpp", "use vpp=1")
    if p.pp > 1 and not setup.stack.pipeline:
        raise InputError(f"pp={p.pp} but this training stack has no pipeline parallelism", "pp", "use pp=1")
    if p.pp % 2 and setup.stack.schedule == "dualpipe":
        raise InputError(f"pp={p.pp} but DualPipe needs an even number of pipeline stages", "pp", "use an even pp")
    ctx = _Ctx(setup, gpu, system, fabric, oversubscription, hops)
    est = _evaluate(ctx, p)
    if require_fit and not est.fits:
        raise _fit_error(est, gpu)
    return est


# ---------------------------------------------------------------------------
# Parallelism search
# ---------------------------------------------------------------------------

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pp_options(layers: int, limit: int) -> list[int]:
    opts = set(d for d in _divisors(layers) if d <= limit)
    x = 1
    while x <= min(layers, limit):
        opts.add(x)
        x *= 2
    return sorted(opts)


def _total(entry) -> float:
    if not entry:
        return 0.0
    lt = entry[1]
    return lt.fwd + lt.bwd + lt.recompute


def search(setup: Setup, gpu, system, fabric, gpus: int, oversubscription: float = 1.0, top: int = 5,
           fixed: Optional[dict] = None, hops: Optional[int] = None) -> list[TrainingEstimate]:
    """The fastest layouts that fit, best first. `fixed` pins any of tp, pp,
    cp, ep, dp, micro_batch, vpp, recompute, zero, sp."""
    check_setup(setup)
    _check_precision(setup, gpu)
    fixed = dict(fixed or {})
    m = setup.model
    domain = system.nvlink_domain_gpus
    ctx = _Ctx(setup, gpu, system, fabric, oversubscription, hops)
    cap = gpu.hbm_bytes
    seqs = setup.global_batch_seqs

    def opts(name, default):
        return [fixed[name]] if fixed.get(name) is not None else default

    tps = opts("tp", [t for t in _divisors(domain) if m.heads % t == 0 and t <= gpus])
    cps = opts("cp", [c for c in (1, 2, 4, 8, 16, 32) if setup.seq_len // c >= 2048 or c == 1]
               if setup.stack.context_parallel else [1])
    pps = opts("pp", _pp_options(m.layers, gpus) if setup.stack.pipeline else [1])
    eps = opts("ep", [e for e in _divisors(m.experts) if e <= gpus] if m.is_moe else [1])
    mbs = opts("micro_batch", list(SEARCH_MICRO_BATCHES))
    vpps = opts("vpp", list(SEARCH_VPP) if setup.stack.interleaved else [1])
    recs = opts("recompute", ["none", "selective", "full"])
    zeros = opts("zero", list(setup.stack.zero_stages))
    sps = opts("sp", [setup.stack.sequence_parallel])
    results: list[TrainingEstimate] = []
    best_fail: Optional[tuple] = None
    kth: list[float] = []          # the `top` best step times so far (max-heap by negation)
    for tp in tps:
        for cp in cps:
            for pp in pps:
                if gpus % (tp * cp * pp) or (pp % 2 and setup.stack.schedule == "dualpipe"):
                    continue
                dp = gpus // (tp * cp * pp)
                if fixed.get("dp") is not None and dp != fixed["dp"]:
                    continue
                if m.heads % tp or pp > m.layers:
                    continue
                for ep in eps:
                    if ep > 1 and ((dp * tp) % ep or m.experts % ep):
                        continue
                    for mb in mbs:
                        if mb > 1 and dp * mb > seqs and fixed.get("micro_batch") is None:
                            continue
                        m_count = max(1, round(seqs / (dp * mb)))
                        for vpp in (vpps if pp > 1 else [1]):
                            if vpp > 1 and pp * vpp > m.layers:
                                continue
                            for sp in (sps if tp > 1 else [False]):
                                lightest = len(recs)     # index of the lightest recompute found to fit
                                for zero in zeros:
                                    for ri, rec in enumerate(recs):
                                        if ri >= lightest:
                                            break   # a lower ZeRO stage already fits with this recompute
                                        p = ParallelConfig(tp=tp, pp=pp, cp=cp, ep=ep, dp=dp, micro_batch=mb,
                                                           vpp=vpp, sp=sp, recompute=rec, zero=zero)
                                        per, moe_n = stage_layers(m, p)
                                        dl = ctx.layer(False, p) if per > moe_n else None
                                        ml = ctx.layer(True, p) if moe_n else None
                                        # lower bound: the fullest stage's kernels, every micro-batch
                                        bound = m_count * ((per - moe_n) * _total(dl) + moe_n * _total(ml))
                                        if len(kth) >= top and bound >= -kth[0]:
                                            break   # heavier recompute only gets slower
                                        mem = ctx.memory(p)
                                        if mem.total > cap:
                                            if best_fail is None or mem.total < best_fail[0]:
                                                best_fail = (mem.total, p)
                                            continue
                                        lightest = ri
                                        est = _evaluate(ctx, p, mem)
                                        results.append(est)
                                        heapq.heappush(kth, -est.step_time_s)
                                        if len(kth) > top:
                                            heapq.heappop(kth)
                                        break   # lighter recompute fits: heavier ones are slower
    if not results:
        if best_fail is not None:
            raise InputError(
                f"no layout of {m.name} fits on {gpus} x {gpu.name}: the smallest needs "
                f"{best_fail[0] / 2**30:.1f} GiB per GPU of {cap / 2**30:.1f} GiB",
                "parallelism search", "use more GPUs, a GPU with more memory, or a shorter sequence")
        raise InputError(f"no valid layout of {m.name} on {gpus} GPUs", "parallelism search",
                         "use a GPU count divisible by the tensor/pipeline sizes (e.g. a multiple of 8)")
    results.sort(key=lambda e: e.step_time_s)
    return results[:top]


# ---------------------------------------------------------------------------
# The API other layers call
# ---------------------------------------------------------------------------

DEFAULT_BATCH_TOKENS = 4 * 1024 * 1024   # Llama 2 / Llama 1: 4M tokens per step


_CACHE: "OrderedDict[tuple, TrainingEstimate]" = OrderedDict()
_CACHE_SIZE = 4096


def _gpu_key(gpu) -> tuple:
    return (gpu.name, gpu.architecture, tuple(sorted(gpu.tflops.items())), gpu.hbm_gib, gpu.hbm_tbps,
            gpu.nvlink_gbps_bidir)


def estimate_training(model: ModelSpec, gpu, system, fabric, gpus: int, seq_len: int = 8192,
                      global_batch_tokens: Optional[float] = None, precision: str = "bf16",
                      parallel: Optional[ParallelConfig] = None, oversubscription: float = 1.0,
                      kind: str = "pretrain", lora_rank: int = 16, doc_tokens: Optional[int] = None,
                      packing: bool = True, stack: str = "modern", tiers_spanned: Optional[int] = None
                      ) -> TrainingEstimate:
    """Steady-state estimate of one training job (see the module docstring).
    `model` may be a ModelSpec; `stack` a name of workloads.training.STACKS.
    tiers_spanned: switch tiers the placement crosses (2 hops each) for the
    network latency; None lets the collectives model pick from the size."""
    key = (model if isinstance(model, str) else model, _gpu_key(gpu), system, fabric, gpus, seq_len,
           global_batch_tokens, precision, parallel,
           oversubscription, kind, lora_rank, doc_tokens, packing, stack, tiers_spanned)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    if isinstance(model, str):
        from workloads.models import load_models
        model = load_models().get(model, "model")
    hops = 2 * int(tiers_spanned) if tiers_spanned else None
    est = _estimate_training(model, gpu, system, fabric, gpus, seq_len, global_batch_tokens, precision, parallel,
                             oversubscription, kind, lora_rank, doc_tokens, packing, stack, hops)
    _CACHE[key] = est
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return est


def _estimate_training(model, gpu, system, fabric, gpus, seq_len, global_batch_tokens, precision, parallel,
                       oversubscription, kind, lora_rank, doc_tokens, packing, stack, hops) -> TrainingEstimate:
    if gpus < 1:
        raise InputError(f"{gpus} GPUs", "gpus", "use 1 or more GPUs")
    batch_tokens = global_batch_tokens or max(DEFAULT_BATCH_TOKENS, seq_len)
    seqs = max(1, round(batch_tokens / seq_len))
    setup = Setup(model=model, seq_len=int(seq_len), global_batch_seqs=seqs, precision=precision, kind=kind,
                  lora_rank=lora_rank, doc_tokens=doc_tokens, packing=packing, stack=get_stack(stack))
    if parallel is None:
        return search(setup, gpu, system, fabric, gpus, oversubscription, top=1, hops=hops)[0]
    check_parallel(model, parallel, gpus, system.nvlink_domain_gpus)
    return evaluate(setup, parallel, gpu, system, fabric, oversubscription, hops=hops)


def training_time_s(est: TrainingEstimate, tokens: float) -> float:
    """Seconds of steady-state training on `tokens` tokens."""
    return tokens / est.tokens_per_s


def estimate_finetune(model: ModelSpec, gpu, system, fabric, gpus: int, tokens: float, kind: str = "sft",
                      lora_rank: int = 16, seq_len: int = 4096, global_batch_tokens: Optional[float] = None,
                      doc_tokens: Optional[int] = None, packing: bool = True, precision: str = "bf16",
                      oversubscription: float = 1.0) -> tuple[TrainingEstimate, float]:
    """(estimate, seconds) of fine-tuning (`sft` or `lora`) on `tokens`.
    Fine-tuning batches default to 1M tokens (typical SFT recipes use
    0.5-2M-token batches)."""
    if kind not in ("sft", "lora"):
        raise InputError(f"unknown fine-tuning kind {kind!r}", "kind", "use sft or lora")
    est = estimate_training(model, gpu, system, fabric, gpus, seq_len=seq_len,
                            global_batch_tokens=global_batch_tokens or max(seq_len, 2**20),
                            precision=precision, kind=kind, lora_rank=lora_rank, doc_tokens=doc_tokens,
                            packing=packing, oversubscription=oversubscription)
    return est, training_time_s(est, tokens)


def typical_system(catalog, gpu_name: str, where: str = "gpu"):
    """(GPU, system) for a GPU name: the catalog system built around that GPU
    (DGX first, then HGX, then any), or, for a GPU no system carries (e.g.
    a100-40gb), the system of the same architecture and NVLink generation
    with that GPU in it. The one place gpusim maps a GPU to its system."""
    gpu = catalog.gpu(gpu_name, where)

    def rank(s):
        return (0 if s.name.startswith("dgx") else 1 if s.name.startswith("hgx") else 2, s.name)

    own = sorted((s for s in catalog.systems.values() if s.gpu == gpu.name), key=rank)
    if own:
        return gpu, own[0]
    kin = sorted((s for s in catalog.systems.values()
                  if catalog.gpus[s.gpu].architecture == gpu.architecture
                  and catalog.gpus[s.gpu].nvlink_gbps_bidir == gpu.nvlink_gbps_bidir), key=rank)
    if not kin:
        raise InputError(f"no system in the catalog carries GPU {gpu.name!r}", where,
                         "name a system with --system or add one to a catalog file")
    return gpu, kin[0].model_copy(update={"gpu": gpu.name})
