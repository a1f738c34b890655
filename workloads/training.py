"""The work and the memory of one training step, given a parallel layout.

This module answers "what does a step ask of each GPU": the operations of
one transformer layer on one GPU (matrix multiplies with their shapes,
attention, memory-bound elementwise work, with FLOPs and bytes), the model
FLOPs per token (the MFU numerator), and the bytes each GPU must hold
(weights, gradients, optimizer state, activations) under mixed precision,
ZeRO-1/2/3 / FSDP sharding, the three activation-recompute modes and LoRA.
No hardware and no time: ``hardware/perf_training.py`` turns this work into
seconds on a GPU and a fabric.

Conventions
- A *micro-batch* of ``micro_batch`` sequences of ``seq_len`` tokens runs on
  one tensor-parallel (TP) group; context parallelism (CP) splits the
  sequence, so each GPU sees ``micro_batch * seq_len / cp`` tokens ("local
  tokens"). With sequence parallelism (SP) the elementwise work and the
  stored activations of the hidden-size tensors are split over TP too.
- Model FLOPs per token (MFU numerator, no recompute) are
  ``6 x matmul weights`` plus causal attention: a token at position i
  attends to i keys, so the average query sees (d + 1) / 2 keys of its
  document of d tokens (d = seq_len unless packed documents are shorter).
- Mixed precision (Megatron-LM with the distributed optimizer; Rajbhandari
  et al. 2020, ZeRO): bf16 weights (2 bytes), fp32 gradient buffers
  (4 bytes), fp32 master weights + Adam moments (12 bytes). ZeRO-1 shards
  the 12 optimizer bytes over the data-parallel group, ZeRO-2 the gradients
  too, ZeRO-3 / FSDP also the weights.
- Activation bytes per layer follow Korthikanti et al. 2022 ("Reducing
  Activation Recomputation in Large Transformer Models", Sec. 4), written
  out per tensor so GQA, gated MLPs, MoE and FlashAttention are covered:
  their GPT case (34 s b h + 5 a s^2 b bytes per layer) is reproduced with
  ``attention='unfused'``.
- MoE layers: routed experts are spread over ``ep`` GPUs drawn from the
  data x tensor-parallel ranks (expert tensor parallelism 1); with ep = 1
  experts are split by TP like a dense MLP. Either way a GPU does
  1/tp of its TP group's expert work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional

from workloads.errors import InputError
from workloads.models import ModelSpec

RECOMPUTE = ("none", "selective", "full")
ZERO_STAGES = (0, 1, 2, 3)
ATTENTION_KERNELS = ("flash", "flash1", "unfused")
KINDS = ("pretrain", "sft", "lora")
TRAIN_PRECISIONS = ("bf16", "fp16", "fp8", "fp4")

# Bytes per value (see module docstring for the sources).
ACT_BYTES = 2.0          # bf16/fp16 activations
FP8_ACT_BYTES = 1.0      # a GEMM input saved for backward as its fp8 cast (Transformer Engine FP8 training)
WEIGHT_BYTES = 2.0       # bf16 working weights (fp8 training keeps bf16 weights; TE casts per GEMM)
GRAD_BYTES = 4.0         # fp32 gradient accumulation buffer (Megatron-LM default for bf16)
OPTIMIZER_BYTES = 12.0   # fp32 master weights + Adam first and second moments
LOGIT_BYTES = 6.0        # bf16 logits + fp32 copy for the cross-entropy, per vocabulary entry
UNFUSED_SCORE_ACT_BYTES = 5.0   # per attention score kept: softmax out 2 + dropout mask 1 + dropout out 2 (Korthikanti Sec. 4.1)
# Memory traffic of unfused attention per score element in the forward pass:
# QK^T writes the scores (2), fused scale-mask-softmax reads and writes them
# (4), dropout reads, writes and stores a mask (5), the AV product reads them
# (2). Megatron-LM 2021 kernels; FlashAttention keeps scores on chip.
UNFUSED_SCORE_TRAFFIC_BYTES = 13.0
# HBM traffic of the MoE router per token and expert score in the forward:
# fp32 logits written (4), softmax / sigmoid read and written (8), top-k
# selection and the auxiliary load-balancing loss read them (8)
# (Megatron-core router: gating GEMM, then score function, top-k and aux loss).
ROUTER_SCORE_BYTES = 20.0


@dataclass(frozen=True)
class ParallelConfig:
    """A training layout. gpus = tp x pp x cp x dp; ep divides dp x tp.

    vpp: model chunks per pipeline stage (interleaved 1F1B when > 1).
    sp: sequence parallelism alongside TP. recompute: none | selective
    (recompute attention scores and activation functions) | full (keep only
    each layer's input). zero: 0-3 (3 = FSDP).
    """
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    micro_batch: int = 1
    vpp: int = 1
    sp: bool = True
    recompute: str = "selective"
    zero: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    @property
    def schedule(self) -> str:
        return "interleaved" if self.vpp > 1 else ("1f1b" if self.pp > 1 else "none")

    def as_dict(self) -> dict:
        return {"tp": self.tp, "pp": self.pp, "cp": self.cp, "ep": self.ep, "dp": self.dp,
                "micro_batch": self.micro_batch, "vpp": self.vpp, "sp": self.sp,
                "recompute": self.recompute, "zero": self.zero, "schedule": self.schedule}


@dataclass(frozen=True)
class Stack:
    """Software features of the training framework that change the work or
    how it overlaps (documented properties of the frameworks, not fitted).

    attention: flash (FlashAttention-2/3: scores stay on chip, causal half
      computed) | flash1 (FlashAttention-1 / xformers memory-efficient
      attention, 2022-23: fused, slower) | unfused (2021-era
      scale-mask-softmax + dropout kernels: the full score matrix goes
      through HBM).
    sequence_parallel: Korthikanti et al. 2022 sequence parallelism with TP.
    interleaved: the interleaved 1F1B pipeline schedule is available.
    p2p_scatter_gather: pipeline sends split over the TP ranks and gathered
      on NVLink (Narayanan et al. 2021 Sec. 4.1); otherwise every TP rank
      sends the whole activation over its own NIC.
    dp_overlap: gradient reduction overlaps the backward pass and parameter
      gathering the next forward (Megatron-core --overlap-grad-reduce /
      --overlap-param-gather, PyTorch DDP/FSDP bucketing); otherwise it
      runs after the pipeline flush.
    pipeline: the framework has pipeline parallelism at all.
    zero_stages: the optimizer-sharding stages it offers (0 = none).
    context_parallel: the framework can split a sequence over GPUs (CP).
    tp_overlap: tensor-parallel all-gather / reduce-scatter pipelined with
      the GEMMs they feed (Megatron-core --tp-comm-overlap, Transformer
      Engine userbuffers; Wang et al. ASPLOS 2023): the GEMM is split into
      tp chunks and each chunk's transfer overlaps the previous chunk's
      math, so one chunk's transfer stays exposed (and any communication
      longer than the GEMMs).
    cp_overlap: context-parallel K/V exchange overlapped with attention
      (Megatron-core's ring attention); otherwise all-gathered before it,
      on the critical path (Llama 3's all-gather CP, Dubey et al. 2024
      Sec. 3.3.2).
    ep_overlap: share of the MoE dispatch/combine all-to-all hidden under
      computation (never more than the layer's own compute). Megatron-core
      overlaps the all-to-all with shared-expert and attention work of the
      same micro-batch (about half); DeepSeek's DualPipe overlaps it with
      another micro-batch's forward/backward (all of it).
    fp8_dispatch: under FP8 training the expert inputs are quantized before
      the dispatch all-to-all, halving its bytes (DeepSeek-V3 Sec. 3.3.2;
      Megatron-core's default all-to-all dispatcher sends bf16).
    schedule: pipeline schedule: 1f1b (with interleaving when vpp > 1) or
      dualpipe (DeepSeek-V3 Sec. 3.2.1: bidirectional, each GPU holds two
      stages, bubble (pp/2 - 1)(F&B + B - 3W), pp + 1 micro-batches of
      activations, two copies of the stage's weights and gradients).
    expert_gemm_streams: how the local experts' GEMMs run. Transformer
      Engine's GroupedLinear (Megatron-core's grouped GEMM, 2024-26) issues
      one cuBLAS GEMM per local expert, round-robin on 4 CUDA streams
      (TE PR #853 "Grouped GEMM via multi-stream cuBLAS"; common/util/
      multi_stream: num_compute_streams = 4): each expert is its own launch
      and at most 4 of them share the SMs' waves. 0 = one grouped kernel
      for all local experts (DeepGEMM / CUTLASS grouped GEMM: one launch,
      all experts share waves).
    moe_host_sync: dropless token routing whose per-expert token counts the
      host needs (all-to-all split sizes, grouped-GEMM sizes, permutation
      output size) synchronizes host and device in every MoE layer's
      forward (Megatron-core's alltoall dispatcher; AMD's Primus-Megatron
      "Sync-Free MoE" notes syncs in the router, dispatcher, permutation and
      grouped MLP). After a sync the GPU's queue is empty, so the host's
      per-expert launch costs are not hidden behind queued work. DualPipe
      fills that time with the other direction's micro-batch (False).
    grad_bytes: bytes per gradient in the accumulation buffer and the
      data-parallel reduction: 4 (fp32, Megatron-LM's --bf16 default, Llama 3,
      DeepSeek-V3) or 2 (bf16: NeMo / Megatron-Bridge performance recipes set
      grad_reduce_in_fp32 = False).
    efficiency: fraction of the modelled kernel throughput the framework
      sustains (1.0 unless a published steady-state figure of that
      framework says otherwise; see STACKS).
    """
    attention: str = "flash"
    sequence_parallel: bool = True
    interleaved: bool = True
    p2p_scatter_gather: bool = True
    dp_overlap: bool = True
    pipeline: bool = True
    zero_stages: tuple = (1, 2, 3)
    context_parallel: bool = True
    tp_overlap: bool = True
    cp_overlap: bool = True
    ep_overlap: float = 0.5          # Megatron-core: about half hidden (see above)
    fp8_dispatch: bool = False
    expert_gemm_streams: int = 4     # TE GroupedLinear: per-expert cuBLAS GEMMs on 4 streams
    moe_host_sync: bool = True       # dropless MoE: host-device syncs every MoE layer forward
    schedule: str = "1f1b"
    grad_bytes: float = GRAD_BYTES
    efficiency: float = 1.0


STACKS = {
    # Megatron-core + Transformer Engine, 2024 onwards (the default): flash
    # attention, sequence and context parallelism (ring attention under the
    # attention kernel), interleaved 1F1B, TP communication pipelined with
    # the GEMMs (--tp-comm-overlap), DP traffic overlapped (--overlap-grad-
    # reduce / --overlap-param-gather), fp32 gradients (Megatron-LM's --bf16
    # default), bf16 MoE all-to-all about half hidden
    "modern": Stack(),
    # Megatron-LM as in Narayanan et al. SC21: fused softmax (no FlashAttention),
    # no sequence parallelism (2022), interleaved schedule and scatter/gather
    # p2p (introduced there), gradient all-reduce after the pipeline flush
    "megatron-2021": Stack(attention="unfused", sequence_parallel=False, interleaved=True,
                           p2p_scatter_gather=True, dp_overlap=False, zero_stages=(0,),
                           context_parallel=False, tp_overlap=False),
    # Megatron-DeepSpeed (MT-NLG 2021, BLOOM 2022): Megatron TP kernels with
    # DeepSpeed's pipeline engine (plain 1F1B, whole-tensor p2p)
    "megatron-deepspeed": Stack(attention="unfused", sequence_parallel=False, interleaved=False,
                                p2p_scatter_gather=False, dp_overlap=False, zero_stages=(0, 1),
                                context_parallel=False, tp_overlap=False),
    # metaseq (OPT, 2022): Megatron TP + FairScale FSDP, fused softmax, no pipeline
    "metaseq": Stack(attention="unfused", sequence_parallel=False, interleaved=False,
                     p2p_scatter_gather=False, dp_overlap=True, pipeline=False, zero_stages=(0, 3),
                     context_parallel=False, tp_overlap=False),
    # Meta's Llama 1/2 recipe (Touvron et al. 2023a Sec. 2.4): xformers
    # memory-efficient causal attention (pre-FlashAttention-2), tensor +
    # sequence parallelism, reduced checkpointing, communication overlapped;
    # no pipeline or context parallelism described
    # Its measured steady state, 380 tokens/s/GPU for LLaMA-65B on 2,048
    # A100-80GB (same paper), is `efficiency` of what the model predicts for
    # that run with efficiency 1 (gpusim's one calibration to a run,
    # recomputed by tests/test_validate.py; MosaicML's 2023 H100 benchmarks
    # in training_checks.csv check it).
    "fsdp-tp-2023": Stack(attention="flash1", sequence_parallel=True, interleaved=False,
                          p2p_scatter_gather=True, dp_overlap=True, pipeline=False, zero_stages=(1, 2, 3),
                          context_parallel=False, tp_overlap=False, efficiency=0.82),
}


# DeepSeek's HAI-LLM as described for DeepSeek-V3 (DeepSeek-AI 2024 Sec.
# 3.2-3.3): DualPipe with the EP all-to-all and PP sends fully overlapped,
# 20 of the H800's 132 SMs kept for communication (so GEMMs get 112/132 of
# the tensor cores), ZeRO-1 data parallelism, no tensor parallelism needed.
# Its expert GEMMs are grouped kernels (DeepGEMM: FP8 GEMMs with fine-grained
# scaling "as proposed in DeepSeek-V3", MoE grouped GEMMs in one kernel):
# one launch for all local experts.
STACKS["deepseek-dualpipe"] = Stack(interleaved=False, zero_stages=(1,), context_parallel=False,
                                    ep_overlap=1.0, fp8_dispatch=True, schedule="dualpipe",
                                    expert_gemm_streams=0, moe_host_sync=False, efficiency=112.0 / 132.0)
# NVIDIA's NeMo / Megatron-Bridge performance recipes (2024-26): Megatron-core
# as "modern", with gradients accumulated and reduced in bf16
# (grad_reduce_in_fp32 = False in the published recipes).
STACKS["nemo"] = replace(STACKS["modern"], grad_bytes=2.0)
# Meta's Llama 3 stack (Dubey et al. 2024 Sec. 3.3.2-3.3.3): TP/CP/PP/FSDP
# with an interleaved pipeline, all-gather context parallelism whose
# K/V gather is exposed, FP32 gradient accumulation and reduce-scatter; no
# tensor-parallel communication overlap is described.
STACKS["llama3-meta"] = replace(STACKS["modern"], tp_overlap=False, cp_overlap=False)
# PyTorch FSDP stacks of 2023 (MosaicML LLM Foundry, Meta's Llama 1/2) share
# the fsdp-tp-2023 features and its measured efficiency.
STACKS["fsdp-2023"] = STACKS["fsdp-tp-2023"]


def get_stack(name: str, where: str = "stack") -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        from workloads.errors import unknown_name
        raise unknown_name("training stack", name, STACKS, where) from None


@dataclass(frozen=True)
class Setup:
    """What is trained and how, independent of layout and hardware.

    kind: pretrain | sft (full fine-tuning: same work as pretraining) |
      lora (frozen base: no base weight gradients or optimizer state;
      adapters of rank `lora_rank` on every attention and dense MLP matrix).
    doc_tokens: average document length; with `packing` several documents
      share one sequence and attend only within themselves (attention work
      shrinks, every token is useful); without packing each sequence holds
      one document padded to seq_len (padding is computed but not useful).
    stack: the framework's features (see Stack).
    """
    model: ModelSpec
    seq_len: int
    global_batch_seqs: int
    precision: str = "bf16"
    kind: str = "pretrain"
    lora_rank: int = 16
    doc_tokens: Optional[int] = None
    packing: bool = True
    stack: Stack = Stack()

    @property
    def attention(self) -> str:
        return self.stack.attention

    @property
    def doc_len(self) -> int:
        return min(self.seq_len, self.doc_tokens or self.seq_len)

    @property
    def useful_fraction(self) -> float:
        """Fraction of the computed tokens that are real (not padding)."""
        return 1.0 if self.packing else self.doc_len / self.seq_len


def check_setup(s: Setup) -> None:
    if s.precision not in TRAIN_PRECISIONS:
        raise InputError(f"unknown training precision {s.precision!r}", "precision", "use bf16, fp16, fp8 or fp4")
    if s.kind not in KINDS:
        raise InputError(f"unknown training kind {s.kind!r}", "kind", "use pretrain, sft or lora")
    if s.attention not in ATTENTION_KERNELS:
        raise InputError(f"unknown attention kernel {s.attention!r}", "attention", "use flash or unfused")
    if s.seq_len <= 0:
        raise InputError(f"sequence length {s.seq_len} is not positive", "seq_len", "give a length >= 1")
    if s.global_batch_seqs <= 0:
        raise InputError(f"global batch of {s.global_batch_seqs} sequences", "global_batch_tokens",
                         "give a batch of at least one sequence")
    if s.kind == "lora" and s.lora_rank <= 0:
        raise InputError(f"LoRA rank {s.lora_rank}", "lora_rank", "give a rank >= 1")
    if s.doc_tokens is not None and s.doc_tokens <= 0:
        raise InputError(f"document length {s.doc_tokens}", "doc_tokens", "give a length >= 1")


def check_parallel(model: ModelSpec, p: ParallelConfig, gpus: Optional[int] = None, domain_gpus: Optional[int] = None) -> None:
    """InputError (one line, saying why) for a layout that cannot run."""
    for name in ("tp", "pp", "cp", "ep", "dp", "micro_batch", "vpp"):
        if getattr(p, name) < 1:
            raise InputError(f"{name} is {getattr(p, name)}", name, "use an integer >= 1")
    if p.recompute not in RECOMPUTE:
        raise InputError(f"unknown recompute mode {p.recompute!r}", "recompute", "use none, selective or full")
    if p.zero not in ZERO_STAGES:
        raise InputError(f"unknown ZeRO stage {p.zero!r}", "zero", "use 0, 1, 2 or 3")
    if gpus is not None and p.gpus != gpus:
        raise InputError(f"tp x pp x cp x dp = {p.tp}x{p.pp}x{p.cp}x{p.dp} = {p.gpus} is not {gpus} GPUs", "parallelism",
                         "choose tp, pp and cp whose product divides the GPU count")
    if model.heads % p.tp:
        raise InputError(f"tp={p.tp} does not divide the {model.heads} attention heads", "tp",
                         "use a tp that divides the head count")
    if domain_gpus is not None and p.tp > domain_gpus:
        raise InputError(f"tp={p.tp} is larger than the {domain_gpus}-GPU NVLink domain", "tp",
                         f"use tp <= {domain_gpus}")
    if p.pp > model.layers:
        raise InputError(f"pp={p.pp} exceeds the {model.layers} layers", "pp", "use pp <= layers")
    if p.vpp > 1 and (p.pp == 1 or p.pp * p.vpp > model.layers):
        raise InputError(f"vpp={p.vpp} needs pp > 1 and pp x vpp <= {model.layers} layers", "vpp",
                         "use vpp=1 or fewer chunks")
    if p.ep > 1:
        if not model.is_moe:
            raise InputError(f"ep={p.ep} but {model.name} has no experts", "ep", "use ep=1 for a dense model")
        if model.experts % p.ep:
            raise InputError(f"ep={p.ep} does not divide the {model.experts} experts", "ep",
                             "use an ep that divides the expert count")
        if (p.dp * p.tp) % p.ep:
            raise InputError(f"ep={p.ep} does not divide dp x tp = {p.dp * p.tp}", "ep",
                             "experts are spread over data- and tensor-parallel ranks: use an ep dividing dp x tp")


# ---------------------------------------------------------------------------
# FLOPs per token
# ---------------------------------------------------------------------------

def causal_context(doc_len: float) -> float:
    """Average number of keys a query attends to in a causal document."""
    return (doc_len + 1.0) / 2.0


def model_flops_per_token(setup: Setup) -> float:
    """Model FLOPs of one trained token (forward + backward, no recompute):
    6 x matmul weights + 3 x causal attention forward. LoRA skips the base
    weight gradients: 4 x base weights + 6 x adapter weights."""
    m = setup.model
    attn = m.attention_flops_per_token(causal_context(setup.doc_len))
    if setup.kind == "lora":
        return 4.0 * m.params_matmul_active + 6.0 * lora_params(m, setup.lora_rank) + 3.0 * attn
    return 6.0 * m.params_matmul_active + 3.0 * attn


def megatron_hw_flops_per_step(layers: int, hidden: int, vocab: int, seq_len: int, batch_seqs: float) -> float:
    """Megatron-LM's hardware-FLOPs formula for GPT (Narayanan et al. 2021,
    eq. 3): 96 B s l h^2 (1 + s/(6h) + V/(16 l h)), full recompute counted,
    attention counted as the full (non-causal) score matrix."""
    B, s, l, h, V = batch_seqs, seq_len, layers, hidden, vocab
    return 96.0 * B * s * l * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * l * h))


# ---------------------------------------------------------------------------
# Operations of one layer on one GPU
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    """One kernel (or group of identical kernels) of a layer's forward pass
    on one GPU. kind: gemm (m x k times k x n, `batch` times), attn (fused
    attention; flops only), mem (memory-bound, `bytes` of HBM traffic).
    bwd: FLOPs (or bytes) of the backward pass relative to the forward.
    launches: kernels the op issues one after another (a grouped GEMM run
    as one GEMM per local expert issues one per expert; its backward issues
    bwd x launches). wave_group: how many of the `batch` GEMMs run
    concurrently and share the SMs' waves (0 = all of them). after_sync:
    the launches follow a host-device synchronization (dropless MoE), so
    the GPU waits for the host to issue each of them."""
    name: str
    kind: str
    flops: float = 0.0
    bytes: float = 0.0
    m: float = 0.0
    n: float = 0.0
    k: float = 0.0
    batch: float = 1.0
    bwd: float = 2.0
    precision: str = "bf16"
    recompute_selective: bool = False   # re-run in the backward under selective recompute
    launches: float = 1.0               # separate kernel launches per forward (per-expert GEMMs: one per local expert)
    wave_group: float = 0.0             # GEMMs of the batch running at once and sharing waves (0: all of them)
    after_sync: bool = False            # launched right after a host-device sync: the host's issue time is exposed


@dataclass(frozen=True)
class LayerWork:
    """A layer's forward work on one GPU plus what its communication moves.

    tp_collectives_fwd: TP all-reduce-equivalents per forward (each of
      `tp_bytes`), ep_a2a_fwd: all-to-alls per forward (each `ep_bytes` send
      buffer), cp_bytes: K and V one GPU gathers from its CP peers per
      forward. host_syncs_fwd: 1 for a dropless MoE layer whose forward
      synchronizes host and device (Stack.moe_host_sync); ep_count_bytes:
      the per-expert token counts exchanged over the EP group before the
      dispatch (int64 per expert and rank).
    """
    ops: tuple
    tp_bytes: float
    tp_collectives_fwd: int
    ep_bytes: float
    ep_a2a_fwd: int
    cp_bytes: float
    act_bytes: float            # stored activations for backward (per micro-batch), given recompute
    act_bytes_full: float       # stored activations with no recompute (working set of a recomputed layer)
    host_syncs_fwd: int = 0     # dropless MoE layers whose forward syncs host and device (0 or 1)
    ep_count_bytes: float = 0.0  # per-expert token counts all-gathered over the EP group per forward


def _gemm(name, m, n, k, precision, batch=1.0, bwd=2.0, launches=1.0, wave_group=0.0, after_sync=False) -> Op:
    return Op(name, "gemm", flops=2.0 * m * n * k * batch, m=m, n=n, k=k, batch=batch, bwd=bwd, precision=precision,
              launches=launches, wave_group=wave_group, after_sync=after_sync)


def _mem(name, nbytes, bwd=2.0, selective=False, launches=1.0, after_sync=False) -> Op:
    return Op(name, "mem", bytes=nbytes, bwd=bwd, recompute_selective=selective, launches=launches,
              after_sync=after_sync)


def attention_dims(m: ModelSpec) -> tuple[float, float, float]:
    """(query width, key+value width, attention-output width) of one token."""
    q = m.heads * m.attn_qk_dim
    if m.is_mla:
        kv = m.heads * (m.qk_nope_dim + m.v_head_dim) + m.qk_rope_dim
    else:
        kv = 2.0 * m.kv * m.hd
    o = m.heads * m.attn_v_dim
    return q, kv, o


def layer_work(m: ModelSpec, moe: bool, setup: Setup, p: ParallelConfig) -> LayerWork:
    """Forward work of one layer (dense or MoE) for one micro-batch on one GPU."""
    t, cp = p.tp, p.cp
    T = p.micro_batch * setup.seq_len / cp                 # local tokens of the TP group
    a = 1.0 / t if (p.sp and t > 1) else 1.0              # share of hidden-size elementwise work and storage
    h = float(m.hidden)
    prec_gemm = "fp8" if setup.precision in ("fp8", "fp4") else "bf16"
    lora = setup.kind == "lora"
    wbwd = 1.0 if lora else 2.0                            # frozen base: activation gradients only
    q, kvw, o = attention_dims(m)
    o_params = o * h
    qkv_out = max(1.0, (m.attn_params - o_params) / h)     # fused QKV (or MLA down/up) projection width
    ops = []
    cast = 3.0 if prec_gemm == "fp8" else 0.0             # read bf16 + write fp8 copy of a GEMM input
    # bytes per stored GEMM input: Transformer Engine keeps the fp8 copy it
    # cast for the forward GEMM for the weight-gradient GEMM (FP8 training)
    gb = FP8_ACT_BYTES if prec_gemm == "fp8" else ACT_BYTES

    # --- attention block
    ops.append(_mem("norm_attn", 4.0 * h * T * a, selective=True))
    mla_up = 0.0
    if m.is_mla:
        # MLA's key/value up-projection from the compressed latent: its own
        # GEMM, re-run under selective recompute (Megatron-core mla_up_proj,
        # DeepSeek-V3 Sec. 3.3.3)
        mla_up = m.heads * (m.qk_nope_dim + m.v_head_dim)
        ops.append(_gemm("qkv", T, max(1.0, qkv_out - m.kv_lora_rank * mla_up / h) / t, h, prec_gemm, bwd=wbwd))
        ops.append(replace(_gemm("kv_up", T, mla_up / t, m.kv_lora_rank, prec_gemm, bwd=wbwd), recompute_selective=True))
    else:
        ops.append(_gemm("qkv", T, qkv_out / t, h, prec_gemm, bwd=wbwd))
    ops.append(_mem("rope", 4.0 * (q + kvw) / t * T * 0.5))
    heads_local = m.heads / t
    dk, dv = m.attn_qk_dim, m.attn_v_dim
    doc = setup.doc_len if setup.packing else setup.seq_len
    if setup.attention in ("flash", "flash1"):
        ctx = causal_context(doc)
        flops = 2.0 * T * heads_local * (dk + dv) * ctx
        ops.append(Op("attention", "attn", flops=flops, m=doc, bwd=2.5, precision=setup.attention))
    else:
        # unfused kernels compute the whole s x s score matrix and mask it
        S = setup.seq_len
        nb = p.micro_batch * heads_local / cp
        ops.append(replace(_gemm("scores", S, S, dk, "bf16", batch=nb), recompute_selective=True))
        ops.append(_mem("softmax_dropout", nb * S * S * (UNFUSED_SCORE_TRAFFIC_BYTES - 4.0), selective=True))
        ops.append(replace(_gemm("attn_v", S, dv, S, "bf16", batch=nb), recompute_selective=True))
    ops.append(_gemm("attn_out", T, h, o / t, prec_gemm, bwd=wbwd))
    ops.append(_mem("residual_attn", 6.0 * h * T * a))

    # --- MLP block
    ops.append(_mem("norm_mlp", 4.0 * h * T * a, selective=True))
    gate = 2.0 if m.gated else 1.0
    mlp_act_store = 0.0
    ep_bytes = 0.0
    ep_a2a = 0
    if moe:
        k_act = m.active_experts
        efn = float(m.efn)
        # router: the gating GEMM, then softmax / top-k / auxiliary-loss
        # kernels over the fp32 scores of every local token and expert
        ops.append(_gemm("router", T * a, m.experts, h, "bf16", bwd=2.0))
        ops.append(_mem("router_topk", ROUTER_SCORE_BYTES * T * a * m.experts))
        routed = T / t * k_act                          # token-expert pairs this GPU computes
        streams = setup.stack.expert_gemm_streams
        n_local = m.experts / p.ep if p.ep > 1 else float(m.experts)
        # per-expert GEMMs: one launch per local expert on `streams` streams
        # (TE GroupedLinear), or one grouped kernel (streams = 0)
        launches = n_local if streams else 1.0
        group = min(n_local, float(streams)) if streams else 0.0
        synced = setup.stack.moe_host_sync
        if p.ep > 1:
            per_expert = routed * p.ep / m.experts
            ops.append(_gemm("experts_up", per_expert, gate * efn, h, prec_gemm, batch=n_local, bwd=wbwd,
                             launches=launches, wave_group=group, after_sync=synced))
            ops.append(_gemm("experts_down", per_expert, h, efn, prec_gemm, batch=n_local, bwd=wbwd,
                             launches=launches, wave_group=group, after_sync=synced))
            # dispatch carries the expert inputs (fp8 under FP8 training where
            # the stack quantizes before dispatch, DeepSeek-V3 Sec. 3.3.2),
            # combine the bf16 outputs; one size each: their average
            dispatch = gb if setup.stack.fp8_dispatch else ACT_BYTES
            ep_bytes = routed * h * (dispatch + ACT_BYTES) / 2.0
            ep_a2a = 2                                   # dispatch + combine
            if n_local > 1:
                # received tokens arrive grouped by source rank and are
                # re-sorted by local expert (and back before the combine):
                # a read and a write of every routed token, twice
                ops.append(_mem("sort_chunks", 2.0 * 2.0 * routed * h * ACT_BYTES, bwd=1.0))
        else:
            per_expert = T * k_act / m.experts
            ops.append(_gemm("experts_up", per_expert, gate * efn / t, h, prec_gemm, batch=m.experts, bwd=wbwd,
                             launches=launches, wave_group=group, after_sync=synced))
            ops.append(_gemm("experts_down", per_expert, h, efn / t, prec_gemm, batch=m.experts, bwd=wbwd,
                             launches=launches, wave_group=group, after_sync=synced))
        ops.append(_mem("expert_act", routed * efn * (2.0 * gate + 2.0), selective=True))
        # permute (gather each token once per expert it is routed to) and
        # unpermute (weighted sum back): a read and a write of every routed
        # token each; the backward is the inverse permutation, as many bytes
        ops.append(_mem("permute", 4.0 * routed * h * ACT_BYTES, bwd=1.0))
        if cast:
            # the two expert-GEMM inputs (routed tokens, activation output)
            # cast to fp8, per expert when the GEMMs are per-expert launches,
            # and their gradients in the backward; a stack that quantizes
            # before the dispatch casts each token once instead of once per
            # expert it is routed to
            pairs = routed if p.ep > 1 else T * k_act
            width_out = efn if p.ep > 1 else efn / t
            tokens_in = T / t if setup.stack.fp8_dispatch else pairs
            ops.append(_mem("expert_fp8_cast", cast * (tokens_in * h + pairs * width_out),
                            bwd=1.0, launches=2.0 * launches, after_sync=synced))
        # stored per routed token: the first expert GEMM's input (h wide),
        # its output (the activation's input, gate x efn) and the second
        # GEMM's input (efn). With ep = 1 the experts are split by TP
        # (expert TP = TP): Megatron-core's alltoall dispatcher all-gathers
        # the routed tokens over the expert-TP group, so every rank holds all
        # T x k routed tokens at full width as the first GEMM's input, and
        # 1/tp of the efn-wide tensors
        # (megatron/core/transformer/moe/token_dispatcher.py)
        expert_in = routed if p.ep > 1 else T * k_act
        mlp_act_store = routed * (gate * efn * ACT_BYTES + efn * gb) + expert_in * h * gb
        mlp_act_sel = routed * efn * gb
        if m.shared_experts:
            sf = m.shared_experts * efn
            ops.append(_gemm("shared_up", T, gate * sf / t, h, prec_gemm, bwd=wbwd))
            ops.append(_gemm("shared_down", T, h, sf / t, prec_gemm, bwd=wbwd))
            ops.append(_mem("shared_act", T * sf / t * (2.0 * gate + 2.0), selective=True))
            mlp_act_store += T * (gate * sf * ACT_BYTES + sf * gb) / t
            mlp_act_sel += T * sf / t * gb
    else:
        f = float(m.ffn)
        ops.append(_gemm("mlp_up", T, gate * f / t, h, prec_gemm, bwd=wbwd))
        ops.append(_mem("mlp_act", T * f / t * (2.0 * gate + 2.0), selective=True))
        ops.append(_gemm("mlp_down", T, h, f / t, prec_gemm, bwd=wbwd))
        mlp_act_store = T * (gate * f * ACT_BYTES + f * gb) / t
        mlp_act_sel = T * f / t * gb
    ops.append(_mem("residual_mlp", 6.0 * h * T * a))
    if cast:
        gemm_in = T * (h * a + o / t + h * a) + (0.0 if moe else T * m.ffn / t)
        ops.append(_mem("fp8_cast", cast * gemm_in))

    # --- stored activations (Korthikanti et al. 2022, per tensor)
    # norm input (bf16) and norm output = QKV input (a GEMM input: fp8 under
    # FP8 training), Q K V and the attention output for the attention
    # backward; under FP8 the output projection keeps its own fp8 copy of it
    attn_store = T * (ACT_BYTES * h * a + gb * h * a + ACT_BYTES * (q + kvw) / t + ACT_BYTES * o / t)
    if gb < ACT_BYTES:
        attn_store += T * gb * o / t
    if m.is_mla:
        # the compressed query and key/value latents feed the up-projections
        attn_store += T * gb * (m.kv_lora_rank + (m.q_lora_rank or 0))
    if setup.attention != "unfused":
        attn_store += 4.0 * T * heads_local        # FlashAttention's fp32 log-sum-exp per query and head
    scores = 0.0
    masks = 0.0
    if setup.attention == "unfused":
        scores = p.micro_batch * heads_local / cp * setup.seq_len * setup.seq_len * UNFUSED_SCORE_ACT_BYTES
        masks = 2.0 * T * h * a        # hidden-dropout masks after attention and MLP (1 byte each)
    mlp_store = T * (ACT_BYTES + gb) * h * a + mlp_act_store
    full = attn_store + scores + mlp_store + masks
    if p.recompute == "none":
        act = full
    elif p.recompute == "selective":
        # Megatron-core selective recompute modules: core attention (the
        # unfused score matrix), activation functions, norms (their outputs
        # are the stored QKV / MLP inputs) and MLA's up-projected keys/values
        act = full - scores - mlp_act_sel - 2.0 * T * gb * h * a - T * ACT_BYTES * mla_up / t
    else:
        act = T * h * a * ACT_BYTES                       # the layer input only

    tp_coll = 2 if t > 1 else 0
    if moe and p.ep > 1 and t > 1:
        tp_coll = 1   # attention only: routed tokens reach their experts by the EP all-to-all
    cp_bytes = 0.0
    if cp > 1:
        # K and V of the other CP ranks' chunks (MLA: the latent and rope key)
        kv_tok = (m.kv_lora_rank + m.qk_rope_dim) if m.is_mla else 2.0 * m.kv * m.hd / t
        cp_bytes = T * (cp - 1) * kv_tok * ACT_BYTES
    syncs = 1 if (moe and setup.stack.moe_host_sync) else 0
    counts = 8.0 * m.experts * p.ep if (moe and p.ep > 1) else 0.0
    return LayerWork(ops=tuple(ops), tp_bytes=T * h * ACT_BYTES, tp_collectives_fwd=tp_coll,
                     ep_bytes=ep_bytes, ep_a2a_fwd=ep_a2a, cp_bytes=cp_bytes,
                     act_bytes=act, act_bytes_full=full, host_syncs_fwd=syncs, ep_count_bytes=counts)


def head_ops(m: ModelSpec, setup: Setup, p: ParallelConfig) -> tuple:
    """Output projection and cross-entropy on the last pipeline stage."""
    T = p.micro_batch * setup.seq_len / p.cp
    t = p.tp
    prec = "bf16"
    return (_mem("final_norm", 4.0 * m.hidden * T / (t if p.sp else 1)),
            _gemm("logits", T, m.vocab / t, m.hidden, prec, bwd=1.0 if setup.kind == "lora" else 2.0),
            _mem("cross_entropy", T * m.vocab / t * 12.0, bwd=1.0))


def embed_ops(m: ModelSpec, setup: Setup, p: ParallelConfig) -> tuple:
    T = p.micro_batch * setup.seq_len / p.cp
    return (_mem("embedding", 2.0 * m.hidden * T * ACT_BYTES / (p.tp if p.sp else 1), bwd=2.0),)


# ---------------------------------------------------------------------------
# Parameters and memory per GPU
# ---------------------------------------------------------------------------

@lru_cache(maxsize=256)
def lora_params(m: ModelSpec, rank: int) -> float:
    """Adapter weights: rank x (in + out) for every attention matrix and
    every dense (or shared-expert) MLP matrix."""
    q, kvw, o = attention_dims(m)
    h = m.hidden
    attn = rank * ((h + (m.attn_params - o * h) / h) + (o + h))
    mats = 3 if m.gated else 2
    dense = rank * mats * (h + m.ffn)
    shared = rank * mats * (h + m.efn * m.shared_experts) if m.shared_experts else 0.0
    return float(m.layers * attn + (m.layers - m.moe_layers) * dense + m.moe_layers * shared)


def stage_layers(m: ModelSpec, p: ParallelConfig) -> tuple[int, int]:
    """(layers on the fullest stage, of which MoE). Layers are spread as
    evenly as possible; uneven counts put the extra layer on some stages."""
    per = math.ceil(m.layers / p.pp)
    if not m.is_moe:
        return per, 0
    # MoE layers follow the leading dense ones: the fullest stage is all MoE if possible
    moe = min(per, m.moe_layers)
    return per, moe


@lru_cache(maxsize=256)
def layer_params(m: ModelSpec, moe: bool) -> tuple[float, float]:
    """(dense, expert) weights of one layer."""
    if moe:
        router = m.hidden * m.experts
        shared = m.shared_experts * m.expert_params
        return m.attn_params + router + shared, m.experts * m.expert_params
    return m.attn_params + m.dense_mlp_params, 0.0


@dataclass(frozen=True)
class Memory:
    """Bytes one GPU holds (the fullest pipeline stage)."""
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    reserved: float
    stage: str

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits + self.reserved

    def as_dict(self) -> dict:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "logits": self.logits, "reserved": self.reserved,
                "total": self.total, "stage": self.stage}


# CUDA context, NCCL buffers and allocator fragmentation per GPU: PyTorch's
# CUDA context is ~0.5-1 GiB, NCCL channels/buffers ~1-2 GiB at scale, and the
# caching allocator typically leaves 5-10% unusable (Megatron-LM / PyTorch
# memory snapshots). Modelled as a fixed reserve plus a fraction of the rest.
RESERVED_BYTES = 3.0 * 2**30
FRAGMENTATION = 0.07


def micro_batches(setup: Setup, p: ParallelConfig) -> int:
    """Micro-batches per data-parallel rank and step: the global batch is
    rounded to the nearest multiple of dp x micro_batch (at least one).
    E.g. 2,048 sequences over dp = 128 with micro-batches of 1 give 16."""
    return max(1, round(setup.global_batch_seqs / (p.dp * p.micro_batch)))


def in_flight(p: ParallelConfig, m_count: int, rank: int) -> float:
    """Micro-batches whose activations pipeline rank `rank` holds at its
    peak, in units of the whole stage's layers. 1F1B: the first stage runs
    pp forwards before its first backward, rank r pp - r (Narayanan et al.
    2021). Interleaved with vpp chunks (Megatron-LM's schedule): rank r
    warms up with 2(pp - r - 1) + (vpp - 1) pp chunk-forwards, then holds
    one more; each chunk is 1/vpp of the stage. Never more than the step
    has: m micro-batches x vpp chunks."""
    if p.pp == 1:
        return 1.0
    if p.vpp == 1:
        return float(min(m_count, p.pp - rank))
    chunks = min(m_count * p.vpp, 2 * (p.pp - rank - 1) + (p.vpp - 1) * p.pp + 1)
    return chunks / p.vpp


def even_stage_layers(layers: int, pp: int) -> tuple[int, int, int]:
    """(first, middle, last) stage layer counts when layers are split evenly
    (the fullest stages hold ceil(L / pp); any shortfall goes to the last)."""
    if pp == 1:
        return layers, layers, layers
    per = math.ceil(layers / pp)
    last = max(1, layers - (pp - 1) * per)
    return per, per, last


def memory_per_gpu(setup: Setup, p: ParallelConfig, layer_dense: Optional[LayerWork] = None,
                   layer_moe: Optional[LayerWork] = None, stages: Optional[tuple[int, int, int]] = None) -> Memory:
    """Peak bytes per GPU on the fullest pipeline stage. Three stages are
    checked: the first (embedding, the most micro-batches in flight), the
    second (a full stage with one micro-batch fewer) and the last (output
    layer and fp32 logits). `stages` gives (first, middle, last) layer
    counts; the default is an even split. A model's leading dense layers
    sit on the first stages."""
    m = setup.model
    first_n, mid_n, last_n = stages or even_stage_layers(m.layers, p.pp)
    if p.pp == 1:
        first_n = mid_n = last_n = m.layers
    dense_total = m.layers - m.moe_layers
    if layer_dense is None and dense_total:
        layer_dense = layer_work(m, False, setup, p)
    if layer_moe is None and m.moe_layers:
        layer_moe = layer_work(m, True, setup, p)
    etp = 1 if p.ep > 1 else p.tp
    dp_shard = p.dp * p.cp
    ep_shard = max(1, p.dp * p.cp * p.tp // (p.ep * etp))
    emb = m.vocab * m.hidden / p.tp
    lora = setup.kind == "lora"
    gbytes = setup.stack.grad_bytes
    ad_layer = lora_params(m, setup.lora_rank) / m.layers / p.tp if lora else 0.0

    def split(start: int, n: int) -> tuple[int, int]:
        """(dense, moe) layers among layers start .. start + n - 1."""
        dense = max(0, min(start + n, dense_total) - start)
        return dense, n - dense

    def states(n_dense: int, n_moe: int, extra_dense: float) -> tuple[float, float, float]:
        pd = extra_dense
        pe = 0.0
        if n_dense:
            pd += n_dense * layer_params(m, False)[0] / p.tp
        if n_moe:
            d, e = layer_params(m, True)
            pd += n_moe * d / p.tp
            pe += n_moe * e / (p.ep * etp)
        if lora:
            ad = ad_layer * (n_dense + n_moe)
            w = (pd + pe) * WEIGHT_BYTES + ad * WEIGHT_BYTES
            if p.zero >= 3:
                w = (pd / dp_shard + pe / ep_shard) * WEIGHT_BYTES + ad * WEIGHT_BYTES
            g = ad * gbytes / (dp_shard if p.zero >= 2 else 1)
            o = ad * OPTIMIZER_BYTES / (dp_shard if p.zero >= 1 else 1)
            return w, g, o
        w = (pd + pe) * WEIGHT_BYTES
        if p.zero >= 3:
            w = (pd / dp_shard + pe / ep_shard) * WEIGHT_BYTES
            # two layers gathered at a time (the current one and the prefetched next)
            dl, el = layer_params(m, n_moe > 0)
            w += 2.0 * (dl / p.tp + el / (p.ep * etp)) * WEIGHT_BYTES
        gdiv = (dp_shard, ep_shard) if p.zero >= 2 else (1, 1)
        g = (pd / gdiv[0] + pe / gdiv[1]) * gbytes
        odiv = (dp_shard, ep_shard) if p.zero >= 1 else (1, 1)
        o = (pd / odiv[0] + pe / odiv[1]) * OPTIMIZER_BYTES
        return w, g, o

    m_count = micro_batches(setup, p)
    T = p.micro_batch * setup.seq_len / p.cp
    logits = T * m.vocab / p.tp * LOGIT_BYTES

    dualpipe = setup.stack.schedule == "dualpipe" and p.pp > 1

    def activations(n_dense: int, n_moe: int, rank: int) -> float:
        per_mb = n_dense * (layer_dense.act_bytes if n_dense else 0.0) + n_moe * (layer_moe.act_bytes if n_moe else 0.0)
        working = 0.0
        if p.recompute == "full" and (n_dense or n_moe):
            # the one layer being recomputed (a stage may hold no layer at
            # all when the embedding or the output layer fills it)
            working = (layer_moe if n_moe else layer_dense).act_bytes_full
        if dualpipe:
            # pp + 1 micro-batches of one stage's activations at the peak
            return min(m_count, p.pp + 1) * per_mb + working
        return in_flight(p, m_count, rank) * per_mb + working

    candidates = []
    if p.pp == 1:
        out_layer = 0.0 if m.tied_embeddings else emb
        nd, nm = split(0, m.layers)
        w, g, o = states(nd, nm, emb + out_layer)
        candidates.append(((w, g, o, activations(nd, nm, 0), logits), "only"))
    else:
        nd, nm = split(0, first_n)
        w, g, o = states(nd, nm, emb)
        candidates.append(((w, g, o, activations(nd, nm, 0), 0.0), "first"))
        if p.pp > 2:
            nd, nm = split(first_n, mid_n)
            w, g, o = states(nd, nm, 0.0)
            candidates.append(((w, g, o, activations(nd, nm, 1), 0.0), "second"))
        nd, nm = split(m.layers - last_n, last_n)
        w, g, o = states(nd, nm, emb)
        candidates.append(((w, g, o, activations(nd, nm, p.pp - 1), logits), "last"))
    if dualpipe:
        # each GPU holds its stage of both pipeline directions: two copies of
        # the weights and gradients (one optimizer state, ZeRO-sharded)
        candidates = [((2.0 * v[0], 2.0 * v[1]) + v[2:], name) for v, name in candidates]
    vals, stage = max(candidates, key=lambda x: sum(x[0]))
    sub = sum(vals)
    reserved = RESERVED_BYTES + FRAGMENTATION * sub
    return Memory(weights=vals[0], gradients=vals[1], optimizer=vals[2], activations=vals[3],
                  logits=vals[4], reserved=reserved, stage=stage)

