"""Reasoning models and test-time compute: how many tokens a query really
costs, and what the extra compute buys.

Test-time scaling spends inference compute for accuracy: a reasoning model
thinks for thousands of tokens before it answers, a request may sample
several answers (best-of-n, self-consistency) that share the prompt's KV
cache, a search expands candidates step by step, and a verifier or reward
model scores them. This module turns those choices into per-request work
(tokens prefilled, tokens decoded, sequences side by side, KV held, verifier
tokens), which the serving model prices; and an optional quality model says
what accuracy the compute buys (pass@k from a heavy-tailed per-problem
success rate).

- Token lengths: ``TokenLength`` (fixed, lognormal with the given mean,
  empirical from a trace column) and ``ReasoningOutput`` (thinking + answer).
- Conversations: ``conversation_turns`` drops each turn's reasoning tokens
  from the next turn's context, as reasoning models' chat templates do.
- Test-time compute: ``TestTimeCompute`` (samples, search branching and
  depth, verifier passes) -> ``request_work`` -> ``RequestWork``. The
  serving side of every mode (request-level simulation, fleet mode,
  serve-estimate) sizes a request with the same three functions:
  ``parallel_sequences(samples, search)`` (samples x branching sequences
  share the prompt; depth is search steps, not copies),
  ``generated_tokens_per_request(output_tokens, samples, search)`` and
  ``verifier_work(input_tokens, output_tokens, samples, search, passes)``.
- Quality: ``Difficulty`` (per-problem success rate ~ Beta(alpha, beta),
  heavy-tailed towards hard problems when alpha < 1), ``pass_at_k``,
  ``majority_at_k``, ``samples_for``, ``fit_difficulty``.

Pure arithmetic and seeded sampling: no hardware, no time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from workloads.errors import InputError, unknown_name

DISTRIBUTIONS = ("fixed", "lognormal", "empirical")

DEFAULT_SIGMA = 0.8
"""Log-space spread of lognormal token counts when none is given: output
lengths of chat traces (Azure LLM inference 2023, ShareGPT) have a log
standard deviation of ~0.7-1.0."""

MAJORITY_GRID = 2001
"""Quadrature points over the per-problem success rate for majority@k."""


# ---------------------------------------------------------------------------
# Token lengths
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLength:
    """Tokens per request: 'fixed' (always `mean`), 'lognormal' (mean `mean`,
    log standard deviation `sigma`) or 'empirical' (resampled from `values`)."""
    distribution: str = "fixed"
    mean: float = 1.0
    sigma: float = DEFAULT_SIGMA
    values: tuple[int, ...] = ()

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise unknown_name("token distribution", self.distribution, DISTRIBUTIONS, "distribution")
        if self.distribution == "empirical":
            if not self.values:
                raise InputError("an empirical token distribution needs values", "values",
                                 "give a trace file and column, or a list of token counts")
            if min(self.values) < 0:
                raise InputError("empirical token counts must be >= 0", "values", "remove negative counts")
        else:
            if not (math.isfinite(self.mean) and self.mean >= 0):
                raise InputError(f"token mean must be >= 0, got {self.mean!r}", "mean", "give a token count")
            if self.distribution == "lognormal" and not (math.isfinite(self.sigma) and self.sigma > 0):
                raise InputError(f"lognormal sigma must be > 0, got {self.sigma!r}", "sigma", "give e.g. 0.8")

    @property
    def expected(self) -> float:
        """The distribution's mean in tokens."""
        if self.distribution == "empirical":
            return float(np.mean(self.values))
        return float(self.mean)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n whole token counts (>= 0)."""
        if n < 0:
            raise InputError(f"cannot draw {n} samples", "n", "give n >= 0")
        if self.distribution == "fixed":
            return np.full(n, int(round(self.mean)), dtype=np.int64)
        if self.distribution == "empirical":
            return rng.choice(np.asarray(self.values, dtype=np.int64), size=n, replace=True)
        if self.mean == 0:
            return np.zeros(n, dtype=np.int64)
        mu = math.log(self.mean) - self.sigma ** 2 / 2.0     # so that E[X] = mean
        return np.rint(rng.lognormal(mu, self.sigma, size=n)).astype(np.int64)


def fixed(tokens: float) -> TokenLength:
    return TokenLength("fixed", float(tokens))


def lognormal(mean: float, sigma: float = DEFAULT_SIGMA) -> TokenLength:
    return TokenLength("lognormal", float(mean), float(sigma))


def empirical(values: Sequence[int]) -> TokenLength:
    return TokenLength("empirical", values=tuple(int(v) for v in values))


def from_trace(path, column: str = "output") -> TokenLength:
    """Empirical lengths from a trace file's input or output column (any
    format ``workloads.traces.load_trace`` reads)."""
    from workloads.traces import load_trace
    trace = load_trace(path)
    key = str(column).lower()
    if key in ("input", "input_tokens", "contexttokens", "prompt", "prompt_tokens"):
        return empirical(trace.input_tokens)
    if key in ("output", "output_tokens", "generatedtokens", "completion", "completion_tokens"):
        return empirical(trace.output_tokens)
    raise InputError(f"unknown trace column {column!r}", "column", "use 'input' or 'output'")


@dataclass(frozen=True)
class ReasoningOutput:
    """A reasoning model's output: `thinking` tokens (kept from the user and
    dropped from later turns) then `answer` tokens."""
    answer: TokenLength
    thinking: Optional[TokenLength] = None

    @property
    def expected(self) -> float:
        return self.answer.expected + (self.thinking.expected if self.thinking else 0.0)

    @property
    def thinking_fraction(self) -> float:
        total = self.expected
        return (self.thinking.expected / total) if (self.thinking and total > 0) else 0.0

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(thinking, answer) token counts of n outputs; the answer is at
        least one token."""
        think = self.thinking.sample(rng, n) if self.thinking else np.zeros(n, dtype=np.int64)
        ans = np.maximum(1, self.answer.sample(rng, n))
        return think, ans


def _get(spec, key, default=None):
    if isinstance(spec, dict):
        return spec.get(key, default)
    return getattr(spec, key, default)


def output_from_spec(spec, where: str = "output_tokens") -> ReasoningOutput:
    """A ReasoningOutput from a number or a scenario token spec (mean,
    distribution, sigma, path, column, thinking, answer). With thinking and
    answer, each part follows the distribution with its own mean."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return ReasoningOutput(fixed(spec))
    kind = _get(spec, "distribution", "fixed") or "fixed"
    sigma = float(_get(spec, "sigma", DEFAULT_SIGMA) or DEFAULT_SIGMA)
    thinking, answer = _get(spec, "thinking"), _get(spec, "answer")
    if kind == "empirical":
        path = _get(spec, "path")
        if not path:
            raise InputError("an empirical distribution needs 'path'", where, "give a trace file")
        return ReasoningOutput(from_trace(path, _get(spec, "column") or "output"))

    def part(mean):
        return lognormal(float(mean), sigma) if kind == "lognormal" else fixed(float(mean))

    if thinking is not None or answer is not None:
        return ReasoningOutput(part(answer or 1), part(thinking) if thinking else None)
    mean = _get(spec, "mean")
    if mean is None:
        raise InputError("give 'mean' or thinking/answer", where, "e.g. output_tokens: {thinking: 4000, answer: 500}")
    return ReasoningOutput(part(mean))


# ---------------------------------------------------------------------------
# Conversations: reasoning tokens leave the context between turns
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Turn:
    """One turn of a conversation as the serving engine sees it."""
    prompt_tokens: int       # context the model reads this turn
    cached_tokens: int       # leading part of it still in the KV cache from the last turn
    output_tokens: int       # thinking + answer generated this turn

    @property
    def new_tokens(self) -> int:
        """Prompt tokens to prefill this turn (not in the cache)."""
        return self.prompt_tokens - self.cached_tokens


def conversation_turns(user_tokens: Sequence[int], thinking_tokens: Sequence[int], answer_tokens: Sequence[int],
                       system_tokens: int = 0, keep_thinking: bool = False) -> list[Turn]:
    """Turns of a multi-turn conversation. A reasoning model's thinking is
    removed from the history after each turn (keep_thinking=False, the
    default of DeepSeek-R1 and Qwen3 chat templates), so the next turn's
    context holds only earlier user messages and answers, and the cached
    prefix ends where the removed thinking began."""
    n = len(user_tokens)
    if not (len(thinking_tokens) == len(answer_tokens) == n):
        raise InputError("user, thinking and answer token lists differ in length", "conversation",
                         "give one entry per turn in each list")
    if min(list(user_tokens) + list(thinking_tokens) + list(answer_tokens) + [system_tokens], default=0) < 0:
        raise InputError("token counts must be >= 0", "conversation", "remove negative counts")
    turns, history, cached = [], int(system_tokens), 0
    for u, t, a in zip(user_tokens, thinking_tokens, answer_tokens):
        prompt = history + int(u)
        turns.append(Turn(prompt, min(cached, prompt), int(t) + int(a)))
        if keep_thinking:
            history = prompt + int(t) + int(a)
            cached = history
        else:
            history = prompt + int(a)
            cached = prompt            # the cache holds prompt + thinking + answer; thinking is cut out
    return turns


# ---------------------------------------------------------------------------
# Test-time compute
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TestTimeCompute:
    """How a request spends inference compute.

    samples: answers (beams) kept side by side: best-of-n, self-consistency.
    branching: candidates each beam expands per search step (1 = no search).
    depth: search steps; the output is generated in `depth` segments, and
      after each step the best `samples` of samples x branching candidates
      are kept.
    verifier_passes: verifier / reward-model scoring passes per candidate
      per step (a prefill-only pass over prompt + candidate so far).
    """
    __test__ = False   # not a pytest class
    samples: int = 1
    branching: int = 1
    depth: int = 1
    verifier_passes: int = 0

    def __post_init__(self):
        for name in ("samples", "branching", "depth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a whole number >= 1, got {v!r}", name, "give 1 or more")
        if isinstance(self.verifier_passes, bool) or not isinstance(self.verifier_passes, int) \
                or self.verifier_passes < 0:
            raise InputError(f"verifier_passes must be a whole number >= 0, got {self.verifier_passes!r}",
                             "verifier_passes", "give 0 or more")

    @property
    def candidates(self) -> int:
        """Sequences decoding side by side."""
        return parallel_sequences(self.samples, self)


def _whole(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}", name,
                         f"give {minimum} or more")
    return int(value)


def _search_shape(search) -> tuple[int, int]:
    """(branching, depth) of a search given as None (no search), a
    TestTimeCompute, a scenario SearchSpec or a mapping."""
    if search is None:
        return 1, 1
    return (_whole(_get(search, "branching", 1), "search.branching", 1),
            _whole(_get(search, "depth", 1), "search.depth", 1))


def parallel_sequences(samples: int = 1, search=None) -> int:
    """Sequences one request decodes side by side, sharing its prompt's KV
    cache: samples x search branching.

    A search of `depth` steps does not multiply them: the kept beams carry
    their prefix forward and every candidate generates the answer once,
    spread over the depth steps (after each step the best `samples` of the
    samples x branching candidates are kept and expanded again). `search` is
    None, a TestTimeCompute (its own `samples` is not read: pass it as
    `samples`), a scenario SearchSpec or a mapping with branching and depth.
    This is what a serving estimate takes as its `samples` argument."""
    branching, _ = _search_shape(search)
    return _whole(samples, "samples", 1) * branching


def generated_tokens_per_request(output_tokens: float, samples: int = 1, search=None) -> float:
    """Tokens one request decodes in all: output_tokens (per answer, thinking
    included) x parallel_sequences(samples, search). The decode-work
    multiplier of test-time search is samples x branching, never x depth."""
    if not (isinstance(output_tokens, (int, float)) and not isinstance(output_tokens, bool)
            and math.isfinite(output_tokens) and output_tokens >= 0):
        raise InputError(f"output tokens must be >= 0, got {output_tokens!r}", "output_tokens",
                         "give a token count >= 0")
    return float(output_tokens) * parallel_sequences(samples, search)


def verifier_work(input_tokens: float, output_tokens: float, samples: int = 1, search=None,
                  verifier_passes: int = 0) -> tuple[int, float]:
    """(passes, mean tokens per pass) of one request's verifier / reward-model
    scoring: after every search step each of the parallel sequences is read,
    prompt plus its text so far, `verifier_passes` times (prefill only).
    passes x mean tokens = RequestWork.verifier_tokens."""
    passes = _whole(verifier_passes, "verifier_passes", 0)
    if passes == 0:
        return 0, 0.0
    if input_tokens < 0 or output_tokens < 0:
        raise InputError("token counts must be >= 0", "request", "give input/output tokens >= 0")
    _, depth = _search_shape(search)
    n = passes * parallel_sequences(samples, search) * depth
    mean = float(input_tokens) + float(output_tokens) * (depth + 1) / (2.0 * depth)
    return n, mean


@dataclass(frozen=True)
class RequestWork:
    """What one request asks of a serving replica."""
    prompt_tokens: float        # prefilled once; every sequence shares its KV
    sequences: int              # decoding side by side
    generated_tokens: float     # decoded in all (all sequences, all steps)
    kv_tokens_peak: float       # KV tokens held at once (shared prompt counted once)
    verifier_tokens: float      # tokens verifier passes read (prefill only)
    answer_tokens: float        # tokens the user gets back

    @property
    def output_per_sequence(self) -> float:
        return self.generated_tokens / self.sequences

    def tokens_processed(self) -> float:
        """Tokens pushed through the model: prompt + generated + verifier."""
        return self.prompt_tokens + self.generated_tokens + self.verifier_tokens


def request_work(input_tokens: float, output_tokens: float, ttc: TestTimeCompute = TestTimeCompute()) -> RequestWork:
    """Per-request work of a query with `input_tokens` of prompt and
    `output_tokens` per answer (thinking included) under `ttc`.

    Every candidate generates the full answer length in `depth` segments;
    the kept beams carry their prefix forward, so generated tokens are
    samples x branching x output. The verifier reads prompt + the
    candidate's text so far at each step."""
    if input_tokens < 0 or output_tokens < 0:
        raise InputError("token counts must be >= 0", "request", "give input/output tokens >= 0")
    c = ttc.candidates
    generated = generated_tokens_per_request(output_tokens, ttc.samples, ttc)
    kv_peak = float(input_tokens) + c * float(output_tokens)
    passes, per_pass = verifier_work(input_tokens, output_tokens, ttc.samples, ttc, ttc.verifier_passes)
    return RequestWork(float(input_tokens), c, generated, kv_peak, passes * per_pass, float(output_tokens))


def compute_multiplier(input_tokens: float, output_tokens: float, ttc: TestTimeCompute) -> float:
    """Tokens processed under `ttc` over those of a single pass (prompt +
    one answer): a first-order measure of the extra compute."""
    base = request_work(input_tokens, output_tokens).tokens_processed()
    return request_work(input_tokens, output_tokens, ttc).tokens_processed() / base if base > 0 else 1.0


def request_flops(model, work: RequestWork, verifier=None) -> float:
    """Forward FLOPs of one request on `model` (a workloads.models.ModelSpec),
    attention included: prompt once, each generated token attending to the
    prompt plus half its sequence, verifier passes on `verifier` (default:
    the same model)."""
    seq_out = work.output_per_sequence
    flops = work.prompt_tokens * model.forward_flops_per_token(work.prompt_tokens / 2.0)
    flops += work.generated_tokens * model.forward_flops_per_token(work.prompt_tokens + seq_out / 2.0)
    if work.verifier_tokens:
        v = verifier or model
        flops += work.verifier_tokens * v.forward_flops_per_token((work.prompt_tokens + seq_out) / 2.0)
    return flops


# ---------------------------------------------------------------------------
# Quality: what the compute buys
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Difficulty:
    """Per-problem success rate p ~ Beta(alpha, beta) over a benchmark's
    problems. alpha < 1 puts a heavy tail of hard problems near p = 0, so
    coverage grows like a power law in samples: 1 - pass@k ~ k^-alpha
    (the log-linear coverage curves of Brown et al. 2024, 'Large Language
    Monkeys', and Snell et al. 2024 on test-time compute)."""
    alpha: float
    beta: float

    def __post_init__(self):
        if not (self.alpha > 0 and self.beta > 0 and math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise InputError(f"alpha and beta must be > 0, got {self.alpha!r}, {self.beta!r}", "difficulty",
                             "give positive Beta parameters (or use fit_difficulty)")

    @property
    def pass_at_1(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def pass_at_k(self, k) -> np.ndarray | float:
        """Expected fraction of problems solved by at least one of k samples:
        1 - E[(1-p)^k] = 1 - B(alpha, beta + k) / B(alpha, beta)."""
        k_arr = np.asarray(k, dtype=float)
        if np.any(k_arr < 0):
            raise InputError("k must be >= 0", "k", "give a number of samples >= 0")
        lg = math.lgamma
        a, b = self.alpha, self.beta
        log_fail = np.vectorize(lambda kk: lg(b + kk) + lg(a + b) - lg(b) - lg(a + b + kk))(k_arr)
        out = 1.0 - np.exp(log_fail)
        return float(out) if np.ndim(out) == 0 else out

    def majority_at_k(self, k: int) -> float:
        """Expected accuracy of a majority vote of k samples (self-consistency)
        when wrong answers agree with each other (the pessimistic case): the
        vote is right when more than half the samples are (ties count half)."""
        if k < 1:
            raise InputError("k must be >= 1", "k", "give 1 or more samples")
        from math import comb
        p = (np.arange(MAJORITY_GRID) + 0.5) / MAJORITY_GRID
        logw = (self.alpha - 1) * np.log(p) + (self.beta - 1) * np.log1p(-p)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        win = np.zeros_like(p)
        for j in range(k + 1):
            term = comb(k, j) * p ** j * (1 - p) ** (k - j)
            if 2 * j > k:
                win += term
            elif 2 * j == k:
                win += 0.5 * term
        return float(np.sum(w * win))

    def samples_for(self, target: float, k_max: int = 1 << 20) -> Optional[int]:
        """Fewest samples whose pass@k reaches `target`, or None beyond k_max."""
        if not 0 < target < 1:
            raise InputError(f"target must be between 0 and 1, got {target!r}", "target", "give e.g. 0.9")
        if self.pass_at_k(k_max) < target:
            return None
        lo, hi = 0, 1
        while self.pass_at_k(hi) < target:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.pass_at_k(mid) >= target:
                hi = mid
            else:
                lo = mid
        return hi


def fit_difficulty(pass_at_1: float, pass_at_k: float, k: int) -> Difficulty:
    """The Beta(alpha, beta) whose mean is `pass_at_1` and whose pass@k is
    `pass_at_k` (e.g. a model card's pass@1 and pass@64)."""
    if not 0 < pass_at_1 < 1 or not 0 < pass_at_k < 1 or k < 2:
        raise InputError("need 0 < pass@1 < 1, 0 < pass@k < 1 and k >= 2", "fit_difficulty",
                         "give published pass@1 and pass@k with k >= 2")
    if pass_at_k <= pass_at_1:
        raise InputError(f"pass@{k} ({pass_at_k}) must exceed pass@1 ({pass_at_1})", "fit_difficulty",
                         "check the figures")
    m = pass_at_1
    if pass_at_k >= 1 - (1 - m) ** k:
        raise InputError(f"pass@{k} = {pass_at_k} is above what equal difficulty allows "
                         f"({1 - (1 - m) ** k:.4f})", "fit_difficulty", "check the figures")

    def passk(s: float) -> float:            # s = alpha + beta (concentration)
        return Difficulty(m * s, (1 - m) * s).pass_at_k(k)

    lo, hi = 1e-6, 1e6                        # pass@k rises with concentration
    if passk(lo) > pass_at_k:
        raise InputError(f"pass@{k} = {pass_at_k} is too low for pass@1 = {pass_at_1}", "fit_difficulty",
                         "check the figures")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if passk(mid) < pass_at_k:
            lo = mid
        else:
            hi = mid
    s = math.sqrt(lo * hi)
    return Difficulty(m * s, (1 - m) * s)
