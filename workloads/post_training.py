"""What each post-training technique is as work: a sequence of phases, each
either generation on a serving model (tokens decoded after a prompt),
scoring (a reward model reads tokens: prefill only) or training (tokens
through forward and backward, full weights or LoRA adapters).

A derivative job of `kind` with a token budget D becomes:

- sft:            train the base on D tokens (all weights).
- lora:           train LoRA adapters on the frozen base over D tokens.
- distillation:   the teacher generates D tokens (offline distillation), the
                  student (the base) then trains on them.
- rl:             the policy (the base) generates rollout_ratio x D rollout
                  tokens, the reward model scores them, the policy trains on
                  D tokens (GRPO/PPO style; rollout_ratio folds in reference
                  and critic passes when they matter).
- best_of_n:      the base generates n = samples answers per kept answer
                  (n x D tokens) and the reward model scores all of them.
- synthetic_data: the teacher generates D tokens.
- search:         tree search: `samples` candidates per step over
                  SEARCH_STEPS steps (samples x D tokens generated), with a
                  process reward model re-reading the growing path of every
                  candidate at every step.

Phases carry token counts and FLOPs only; durations come from the hardware
performance models (sim.generators turns phases into job time). Pure
arithmetic: no hardware, no time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from workloads.errors import InputError, unknown_name
from workloads.models import ModelSpec

KINDS = ("sft", "lora", "distillation", "rl", "best_of_n", "synthetic_data", "search")

Action = Literal["generate", "score", "train"]

LORA_BACKWARD_OVER_FORWARD = 1.0
"""LoRA freezes the base weights: the backward pass computes activation
gradients (one forward's worth of FLOPs) but no weight gradients, so a
LoRA step is ~2 forward passes instead of 3 (Hu et al. 2021; the QLoRA and
Unsloth write-ups measure ~2/3 of full fine-tuning FLOPs)."""

SEARCH_STEPS = 8
"""Reasoning steps of a tree search; a process reward model scores every
candidate after each step (Snell et al. 2024 use step-level beam search
with a PRM over a handful to a few dozen steps)."""


@dataclass(frozen=True)
class Phase:
    """One stage of a post-training job.

    action 'generate': `tokens` output tokens decoded by `model`, in samples
    of `response_tokens` after `prompt_tokens` of prompt each.
    action 'score': `model` reads `tokens` in all (prefill, no decoding), in
    sequences of `read_tokens` each (prompt + answer).
    action 'train': `tokens` pass forward and backward; method 'full' or 'lora'.
    """
    name: str
    action: Action
    role: str
    model: ModelSpec
    tokens: float
    flops: float
    prompt_tokens: int = 0
    response_tokens: int = 0
    method: str = "full"
    seq_len: int = 4096
    read_tokens: float = 0.0

    @property
    def samples(self) -> float:
        """Sequences: generated answers (generate) or sequences read (score)."""
        if self.action == "score":
            return self.tokens / self.read_tokens
        return self.tokens / self.response_tokens if self.response_tokens else 0.0


def lora_params(model: ModelSpec, rank: int) -> float:
    """Adapter weights of rank-r LoRA on every attention projection and the
    dense MLP matrices (A: d_in x r, B: r x d_out per matrix). MoE experts
    get none (the common PEFT setting for MoE models)."""
    h = model.hidden
    q_out = model.heads * model.attn_qk_dim
    kv_out = model.kv * model.attn_qk_dim
    attn = (h + q_out) + 2 * (h + kv_out) + (model.heads * model.attn_v_dim + h)
    mlp_mats = 3 if model.gated else 2
    mlp_layers = model.layers - model.moe_layers
    return float(rank * (model.layers * attn + mlp_layers * mlp_mats * (h + model.ffn)))


def train_flops(model: ModelSpec, tokens: float, seq_len: int, method: str = "full", lora_rank: int = 16) -> float:
    """FLOPs of training `tokens` tokens: 3 forward passes per token (full)
    or 2 plus the adapters' own 6 x adapter-params per token (LoRA)."""
    fwd = model.forward_flops_per_token(seq_len / 2.0)
    if method == "full":
        return 3.0 * fwd * tokens
    if method == "lora":
        return (1.0 + LORA_BACKWARD_OVER_FORWARD) * fwd * tokens + 6.0 * lora_params(model, lora_rank) * tokens
    raise unknown_name("training method", method, ("full", "lora"), "method")


def generate_flops(model: ModelSpec, output_tokens: float, prompt_tokens: int, response_tokens: int) -> float:
    """FLOPs of decoding `output_tokens` in answers of `response_tokens`
    after `prompt_tokens` of prompt: the prompts' prefill plus each output
    token's forward over the average context."""
    answers = output_tokens / response_tokens
    prefill = answers * prompt_tokens * model.forward_flops_per_token(prompt_tokens / 2.0)
    decode = output_tokens * model.forward_flops_per_token(prompt_tokens + response_tokens / 2.0)
    return prefill + decode


def score_flops(model: ModelSpec, tokens: float, context: float) -> float:
    """FLOPs of a reward model reading `tokens` with `context` keys on average."""
    return tokens * model.forward_flops_per_token(context)


def phases(kind: str, base: ModelSpec, tokens: float, *, teacher: Optional[ModelSpec] = None,
           reward: Optional[ModelSpec] = None, samples: int = 8, rollout_ratio: float = 1.0,
           lora_rank: int = 16, seq_len: int = 4096, prompt_tokens: int = 512,
           response_tokens: int = 1024) -> list[Phase]:
    """The phases of one post-training job of `kind` with token budget `tokens`.

    base: the model being post-trained (policy, student, sampled model);
    teacher: generator for distillation and synthetic data (default base);
    reward: reward / process-reward model (default base)."""
    if kind not in KINDS:
        raise unknown_name("post-training kind", kind, KINDS, "kind")
    for value, name in ((tokens, "tokens"), (samples, "samples"), (rollout_ratio, "rollout_ratio"),
                        (lora_rank, "lora_rank"), (seq_len, "seq_len"), (prompt_tokens, "prompt_tokens"),
                        (response_tokens, "response_tokens")):
        if not value > 0:
            raise InputError(f"{name} must be > 0, got {value!r}", name, f"give {name} > 0")
    teacher = teacher or base
    reward = reward or base
    p, r = int(prompt_tokens), int(response_tokens)

    def gen(name, role, model, n):
        return Phase(name, "generate", role, model, n, generate_flops(model, n, p, r), p, r, seq_len=p + r)

    def score(name, sequences, reads):
        n = sequences * reads
        return Phase(name, "score", "reward", reward, n, score_flops(reward, n, reads / 2.0), p, r,
                     seq_len=p + r, read_tokens=reads)

    def train(name, role, model, n, method="full"):
        return Phase(name, "train", role, model, n, train_flops(model, n, seq_len, method, lora_rank),
                     method=method, seq_len=seq_len)

    if kind == "sft":
        return [train("train", "base", base, tokens)]
    if kind == "lora":
        return [train("train", "base", base, tokens, "lora")]
    if kind == "distillation":
        return [gen("teacher_generate", "teacher", teacher, tokens), train("student_train", "student", base, tokens)]
    if kind == "rl":
        rollout = tokens * rollout_ratio
        return [gen("rollout", "policy", base, rollout), score("reward", rollout / r, p + r),
                train("policy_train", "policy", base, tokens)]
    if kind == "best_of_n":
        n = tokens * samples
        return [gen("sample", "policy", base, n), score("reward", n / r, p + r)]
    if kind == "synthetic_data":
        return [gen("generate", "teacher", teacher, tokens)]
    # search: samples candidates per step; the PRM re-reads each candidate's
    # path (prompt + the answer so far) after every one of SEARCH_STEPS
    # steps: on average prompt + (steps+1)/(2 steps) of the answer
    n = tokens * samples
    reads = p + r * (SEARCH_STEPS + 1) / (2.0 * SEARCH_STEPS)
    return [gen("expand", "policy", base, n), score("process_reward", n / r * SEARCH_STEPS, reads)]


def total_flops(steps: list[Phase]) -> float:
    return sum(s.flops for s in steps)
