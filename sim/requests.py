"""Request-level simulation of an LLM serving deployment (SimPy).

Minutes to hours of traffic, one request at a time: arrivals from a trace or
an arrival process go through a router to replicas; each replica runs a
continuous-batching engine (a token budget per iteration, chunked prefill,
paged KV cache with preemption and recompute when it runs out, optional
prefix caching); with disaggregation, prefill and decode run on separate
pools and the KV cache crosses the fabric between them. Out come per-request
TTFT, TPOT and end-to-end latency and a summary against the SLOs.

Timing comes from ``hardware.perf_serving`` (the same model the fleet mode
and ``serve-estimate`` use): one ``iteration_time`` per iteration that
carries prefill work, and ``decode_step_time`` for decode-only iterations.
Every engine step is one SimPy Timeout with a callback (no generator
process per replica). Decode-only stretches between two events that matter
(an arrival that can join, a request finishing, the KV cache filling up)
are one step: per batch size, the step time is interpolated linearly in the
batch's total context on a fine geometric grid, so a stretch of k iterations
sums in closed form. Idle replicas schedule nothing (no polling) until work
arrives; an arrival cuts a decode stretch short only when it could join the
batch, and joins at the next iteration boundary, as in a real engine. Work
per event is O(1) plus O(log n) per request finishing (a heap keyed by the
iteration it finishes at), and O(chunks) for an iteration with prefill.

Entry points: ``simulate_requests(spec, catalogs, seed)`` and, for scenario
workloads (``family: inference``, ``mode: request``),
``spec_from_workload(workload, scenario, catalogs)``. In a scenario run the
simulation here comes first, assuming every replica present; the replicas
then hold GPUs of the simulated cluster from the workload's start to the
end of its traffic (sim/fleet.py ``RequestFleet``, sim/engine.py).
"""
from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import numpy as np
import simpy

from hardware.collectives import levels_for_group
from hardware.perf_serving import (ServingConfig, batch_limit, decode_step_time, iteration_time, kv_transfer_time,
                                   memory_plan, replica_gpus)
from workloads.errors import InputError, unknown_name
from workloads.traces import RequestTrace, load_trace, synthetic_trace

ROUTERS = ("round-robin", "least-outstanding", "kv-aware", "random")

KV_ADMISSION_WATERMARK = 0.01
"""Fraction of the KV cache kept free when admitting a new request next to
running ones, so that running sequences can grow a little before anyone is
preempted (vLLM's scheduler watermark, 1% of the KV blocks)."""

DECODE_GRID_BASE_TOKENS = 64
DECODE_GRID_RATIO = 2.0 ** (1.0 / 8.0)
"""Decode-step times are interpolated linearly in the batch's total context
between grid points 0, 64, 64 r, 64 r^2, ... (r = 2^(1/8), 9% apart). The
serving model's decode step is affine in context for a fixed batch (KV
bytes read), so the interpolation is exact up to rounding; a model with a
kink in context would be off by at most the kink within one 9% cell."""

SAMPLE_TRACE = str(Path(__file__).resolve().parent / "data" / "traces" / "azure_conv_sample.csv")
"""The first 2,000 requests of the Azure LLM conversation trace 2023 (CC-BY
4.0, see data/traces/README.md), shipped for examples and tests."""

MAX_SYNTHETIC_REQUESTS = 5_000_000
"""A request-mode stream larger than this is almost surely a mistake (request
mode is for minutes to hours of traffic; the fleet mode covers months)."""

STATES = ("completed", "unfinished", "rejected")
"""Values of the `state` column of requests.csv."""


# ---------------------------------------------------------------- the spec
@dataclass
class RequestSimSpec:
    """What to simulate. Either `trace` (a RequestTrace, e.g. from
    workloads.traces.load_trace) or a synthetic stream: requests_per_s with
    input_tokens / output_tokens (a number, or a mapping with distribution
    fixed | lognormal | exponential | empirical, see workloads.traces.
    sample_tokens), an arrival process (poisson | gamma with cv), a diurnal
    amplitude (0..1) and duration_s (or count).

    replicas: colocated replicas (prefill and decode on the same engine).
    prefill_replicas and decode_replicas (both > 0): disaggregated pools
    instead; replicas is then ignored.
    router: round-robin | least-outstanding | kv-aware | random.
    max_batch: sequences per replica engine (default: the serving model's).
    max_num_tokens: token budget of one iteration (decode tokens count one
    each); chunked_prefill splits prompts to fill it, otherwise a prompt is
    prefilled whole in a prefill-only iteration.
    samples: candidates per request decoding side by side (best-of-n,
    self-consistency, search beams x branching): one prefill, then
    `samples` sequences share the prompt's KV; the request is done when all
    are.
    verifier_passes: after generating, the request runs this many
    prompt-only passes per search step (search_depth steps) over the prompt
    and every candidate's text up to that step (a verifier or reward model
    on the same replicas, workloads.reasoning's accounting) before it is
    done; TTFT and TPOT are the generation's, e2e includes the passes. The
    passes run after the generation, not between search steps.
    prefix_cache_hit_rate: fraction of every prompt found in the prefix
    cache; when 0 and the trace has Mooncake hash_ids, each replica keeps an
    LRU cache of prompt blocks and hits are the leading blocks it holds.
    horizon_s: stop the clock there (requests still in the system are
    'unfinished'); None runs until every request is done.
    kv_capacity_tokens: KV cache per replica in tokens, instead of what the
    memory plan leaves (what-if studies).
    """
    model: str
    system: str
    gpu: Optional[str] = None
    fabric: Optional[str] = None
    replicas: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1
    precision: str = "fp8"
    kv_precision: Optional[str] = None
    attention_dp: bool = False
    max_batch: Optional[int] = None
    max_num_tokens: int = 8192
    chunked_prefill: bool = True
    router: str = "least-outstanding"
    prefix_cache_hit_rate: float = 0.0
    samples: int = 1
    verifier_passes: int = 0
    search_depth: int = 1
    prefill_replicas: int = 0
    decode_replicas: int = 0
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.2
    trace: Optional[RequestTrace] = None
    requests_per_s: Optional[float] = None
    input_tokens: Any = 1000
    output_tokens: Any = 300
    arrival_process: str = "poisson"
    arrival_cv: float = 1.0
    diurnal: float = 0.0
    start_s: float = 0.0
    duration_s: Optional[float] = None
    count: Optional[int] = None
    horizon_s: Optional[float] = None
    kv_capacity_tokens: Optional[int] = None
    base_dir: Optional[str] = None
    where: str = "workload"

    @property
    def disaggregated(self) -> bool:
        return self.prefill_replicas > 0 and self.decode_replicas > 0


@dataclass
class RequestSimResult:
    """requests: one row per request (request_id, arrival_s, input_tokens,
    output_tokens, replica, ttft_s, tpot_s, e2e_s, state, plus
    decode_replica, cached_tokens, preemptions, first_token_s, finish_s).
    summary: the inference block of summary.json. replicas: one row per
    replica (role, requests, iterations, busy_s, busy_fraction,
    preemptions, peak_kv_tokens, kv_capacity_tokens)."""
    requests: Any
    summary: dict
    replicas: Any
    config: Optional[ServingConfig] = None


# ------------------------------------------------------------ step timing
class _StepCost:
    """Iteration times of one replica configuration, fast."""

    def __init__(self, cfg: ServingConfig):
        self.cfg = cfg
        self._points: dict[tuple[int, int], float] = {}
        self._lines: dict[tuple[int, int], tuple[float, float, float, float]] = {}
        self._log_r = math.log(DECODE_GRID_RATIO)
        self._last: dict[int, tuple[float, float, float, float]] = {}

    def mixed(self, prefill_tokens: int, prefill_context: float, batch: int, context: int, seqs: int = 1) -> float:
        return iteration_time(self.cfg, prefill_tokens, prefill_context, batch, context, seqs)

    def _grid(self, j: int) -> float:
        return 0.0 if j == 0 else DECODE_GRID_BASE_TOKENS * DECODE_GRID_RATIO ** (j - 1)

    def _point(self, b: int, j: int) -> float:
        key = (b, j)
        v = self._points.get(key)
        if v is None:
            v = decode_step_time(self.cfg, b, self._grid(j))
            self._points[key] = v
        return v

    def _line(self, b: int, c: float) -> tuple[float, float, float, float]:
        """(a, beta, c_hi, c_lo): step time a + beta * C on the cell [c_lo, c_hi) holding c."""
        line = self._last.get(b)
        if line is not None and line[3] <= c < line[2]:
            return line
        line = self._find_line(b, c)
        self._last[b] = line
        return line

    def _find_line(self, b: int, c: float) -> tuple[float, float, float, float]:
        if c < DECODE_GRID_BASE_TOKENS:
            j = 0
        else:
            j = 1 + int(math.log(c / DECODE_GRID_BASE_TOKENS) / self._log_r)
            if c < self._grid(j):      # guard float rounding at cell edges
                j -= 1
            elif c >= self._grid(j + 1):
                j += 1
        key = (b, j)
        line = self._lines.get(key)
        if line is None:
            lo, hi = self._grid(j), self._grid(j + 1)
            t_lo, t_hi = self._point(b, j), self._point(b, j + 1)
            beta = (t_hi - t_lo) / (hi - lo)
            line = (t_lo - beta * lo, beta, hi, lo)
            self._lines[key] = line
        return line

    def decode_time(self, b: int, c0: int, k: int) -> float:
        """Seconds for k decode steps of b sequences starting at total context c0
        (context grows by b per step)."""
        total = 0.0
        c = c0
        while k > 0:
            a, beta, c_hi, _ = self._line(b, c)
            n = min(k, max(1, math.ceil((c_hi - c) / b)))
            total += n * (a + beta * c) + beta * b * n * (n - 1) / 2.0
            c += n * b
            k -= n
        return total

    def steps_within(self, b: int, c0: int, t: float) -> int:
        """Decode steps (of b sequences from context c0) completed within t seconds."""
        done = 0
        c = c0
        while True:
            a, beta, c_hi, _ = self._line(b, c)
            n = max(1, math.ceil((c_hi - c) / b))
            first = a + beta * c
            cell = n * first + beta * b * n * (n - 1) / 2.0
            if cell <= t:
                t -= cell
                done += n
                c += n * b
                continue
            # largest m with m * first + beta b m (m-1)/2 <= t
            A = beta * b / 2.0
            B = first - A
            if A > 1e-30:
                m = int((-B + math.sqrt(max(0.0, B * B + 4 * A * t))) / (2 * A))
            else:
                m = int(t / first) if first > 0 else n
            m = max(0, min(n, m))
            while m > 0 and m * first + A * m * (m - 1) > t:
                m -= 1
            while m < n and (m + 1) * first + A * (m + 1) * m <= t:
                m += 1
            return done + m


# ---------------------------------------------------------------- requests
class _Req:
    __slots__ = ("id", "arrival", "inp", "out", "n", "cached", "target", "done", "gen", "kv", "iter0", "kv0",
                 "c0", "gen0", "epoch", "replica", "decode_replica", "first", "gen_end", "finish", "preemptions",
                 "hashes", "kvneed", "verify_left", "vplan", "pseqs")

    def __init__(self, rid: int, arrival: float, inp: int, out: int, n: int = 1):
        self.id = rid
        self.arrival = arrival
        self.inp = inp
        self.out = max(1, out)      # a request with 0 output still runs one prefill iteration
        self.n = n                  # parallel samples sharing the prompt (each out tokens long)
        self.cached = 0
        self.target = inp           # tokens this prefill must hold in KV when done
        self.done = 0               # of them, already computed (or cached)
        self.gen = 0                # output tokens emitted (at iter0 when decoding)
        self.kv = 0                 # KV tokens held (at iter0 when decoding)
        self.iter0 = 0
        self.kv0 = 0
        self.c0 = 0
        self.gen0 = 0
        self.epoch = 0
        self.replica = -1
        self.decode_replica = -1
        self.first = math.nan
        self.gen_end = math.nan     # last output token (before verifier passes)
        self.finish = math.nan
        self.verify_left = 0
        self.vplan = None           # verifier passes still to run: [(prompt tokens, sequences), ...]
        self.pseqs = 1              # sequences this prefill spans (verifier passes over several candidates)
        self.preemptions = 0
        self.hashes = None
        self.kvneed = 0


class _Replica:
    """One serving engine: waiting queue, admitted sequences, decode batch."""

    def __init__(self, sim: "_Sim", idx: int, role: str):
        self.sim = sim
        self.env = sim.env
        self.idx = idx
        self.role = role                  # 'colocated' | 'prefill' | 'decode'
        self.cost = sim.cost
        self.cap = sim.kv_capacity
        self.watermark = int(KV_ADMISSION_WATERMARK * self.cap)
        self.max_batch = sim.max_batch
        self.budget = sim.max_num_tokens
        self.chunked = sim.chunked
        self.waiting: deque[_Req] = deque()
        self.prefilling: list[_Req] = []
        self.prefill_seqs = 0                    # sequences (samples) of the prefilling requests
        self.admitted: dict[_Req, None] = {}     # admission order, for LIFO preemption
        self.heap: list = []
        self.iter = 0
        self.b = 0
        self.C = 0
        self.kv_used = 0
        self.queued_tokens = 0
        self.outstanding = 0
        self.routed = 0
        self.preemptions = 0
        self.busy_s = 0.0
        self.peak_kv = 0
        self.batch_time = 0.0       # integral of decode batch over time
        self.idle = True
        self.interruptible = False
        self.token = 0
        self._work: tuple = ()
        self.prefix: Optional[OrderedDict] = OrderedDict() if sim.hash_cache else None
        self.prefix_blocks = max(1, self.cap // sim.block_tokens) if sim.hash_cache else 0
        self._seq = 0

    # ------------------------------------------------------------ intake
    def enqueue(self, r: _Req, front: bool = False) -> None:
        if front:
            self.waiting.appendleft(r)
        else:
            self.waiting.append(r)
        self.queued_tokens += r.target - r.done
        self.kick()

    def kick(self) -> None:
        """New work may be startable: wake an idle engine, or cut a decode
        stretch short if the head of the queue could join the batch."""
        if self.idle:
            self.idle = False
            self._schedule(0.0, self._on_wake)      # after everything else due now
        elif self.interruptible and self.waiting and self._can_admit(self.waiting[0]):
            self._cut_stretch()

    def _can_admit(self, r: _Req) -> bool:
        if self.b + self.prefill_seqs + r.n > self.max_batch:
            return False
        room = self.cap - self.kv_used - (self.watermark if self.admitted else 0)
        return r.kvneed <= room

    # ------------------------------------------------------------ engine
    # A small state machine: each engine step is one SimPy Timeout whose
    # callback applies it and plans the next; a newer step makes older
    # pending callbacks stale (token), which is how a decode stretch is cut.
    def _schedule(self, dt: float, handler) -> None:
        self.token += 1
        ev = self.env.timeout(dt)
        ev.callbacks.append(partial(handler, self.token))

    def _on_wake(self, token: int, _ev=None) -> None:
        if token == self.token:
            self._next()

    def _next(self) -> None:
        """Plan and start the next iteration (or a stretch of decode-only ones)."""
        if not self.admitted and not self.waiting:
            self.idle = True
            return
        self._make_room()
        chunks = self._plan()
        if chunks or self.b == 0:
            if not chunks:
                # nothing can run: wait for KV freed elsewhere (disaggregated transfers)
                self.idle = True
                return
            tokens = 0
            seqs = 0
            attn = 0.0
            for r, n in chunks:
                tokens += n
                p = r.pseqs
                seqs += p
                if p == 1:
                    attn += n * r.done + n * (n + 1) / 2.0
                else:   # p equal sequences advancing side by side
                    m = n / p
                    attn += p * (m * r.done / p + m * (m + 1) / 2.0)
            # without chunked prefill, decodes pause while whole prompts prefill (vLLM v0)
            b = self.b if self.chunked else 0
            dt = self.cost.mixed(tokens, attn / tokens, b, self.C if b else 0, seqs)
            self._work = (chunks, b, dt)
            self._schedule(dt, self._on_mixed)
        else:
            b, c0 = self.b, self.C
            k = max(1, self.heap[0][0] - self.iter)
            k = min(k, max(1, (self.cap - self.kv_used) // b))
            total = self.cost.decode_time(b, c0, k)
            self._work = (b, c0, k, self.env.now, total)
            self.interruptible = True
            self._schedule(total, self._on_decode)

    def _on_mixed(self, token: int, _ev=None) -> None:
        if token != self.token:
            return
        chunks, b, dt = self._work
        self.busy_s += dt
        self.batch_time += b * dt
        if b:
            self._advance(1)
        for r, n in chunks:
            r.done += n
            if r.done >= r.target:
                self.prefilling.remove(r)
                self.prefill_seqs -= r.n
                self._prefill_done(r)
        self._next()

    def _on_decode(self, token: int, _ev=None) -> None:
        if token != self.token:
            return
        self.interruptible = False
        b, _c0, k, _start, spent = self._work
        self.busy_s += spent
        self.batch_time += b * spent
        self._advance(k)
        self._next()

    def _cut_stretch(self) -> None:
        """End the running decode stretch at the next iteration boundary."""
        self.interruptible = False
        b, c0, k, start, _total = self._work
        elapsed = self.env.now - start
        done = min(k, self.cost.steps_within(b, c0, elapsed) + 1)
        spent = self.cost.decode_time(b, c0, done)
        self._work = (b, c0, done, start, spent)
        self._schedule(max(0.0, spent - elapsed), self._on_decode)

    def _make_room(self) -> None:
        """Preempt the most recently admitted sequences until the next decode
        step's KV growth fits (vLLM's recompute preemption)."""
        while self.b and self.kv_used + self.b > self.cap:
            victim = next(reversed(self.admitted))
            self._preempt(victim)

    def _preempt(self, r: _Req) -> None:
        del self.admitted[r]
        if r in self.prefilling:
            self.prefilling.remove(r)
            self.prefill_seqs -= r.n
            self.kv_used -= r.kv
        else:
            steps = self.iter - r.iter0
            r.gen = r.gen0 + steps
            r.epoch += 1
            self.b -= r.n
            self.C -= r.c0 + r.n * steps
            self.kv_used -= r.kv0 + r.n * steps
        r.kv = 0
        r.preemptions += 1
        self.preemptions += 1
        # recompute: prefill the prompt and every sample's tokens so far
        r.target = r.inp + r.n * r.gen
        r.done = min(r.cached, r.target - 1)
        r.kvneed = r.target + r.n
        self.enqueue(r, front=True)

    def _plan(self) -> list:
        """Prefill chunks of this iteration, admitting waiting requests."""
        chunks = []
        if not self.chunked:
            if self.prefilling:   # cannot happen: unchunked prefills finish in one iteration
                raise AssertionError("unchunked prefill left partial")
            budget = self.budget
            while self.waiting and self._can_admit(self.waiting[0]):
                r = self.waiting[0]
                need = r.target - r.done
                if need and chunks and need > budget:
                    break
                self._admit(self.waiting.popleft())
                if need:
                    chunks.append((r, need))
                    budget -= need
                if budget <= 0:
                    break
            return chunks
        budget = self.budget - self.b
        if budget <= 0:
            return chunks
        for r in self.prefilling:
            n = min(r.target - r.done, budget)
            chunks.append((r, n))
            budget -= n
            if budget <= 0:
                return chunks
        while budget > 0 and self.waiting and self._can_admit(self.waiting[0]):
            r = self.waiting.popleft()
            self._admit(r)
            need = r.target - r.done
            if need:
                n = min(need, budget)
                chunks.append((r, n))
                budget -= n
            else:
                budget -= r.n
        return chunks

    def _admit(self, r: _Req) -> None:
        self.queued_tokens -= r.target - r.done
        r.kv = r.kvneed
        self.kv_used += r.kv
        self.admitted[r] = None
        if r.target - r.done > 0:
            self.prefilling.append(r)
            self.prefill_seqs += r.n
        else:
            self._join_decode(r)   # KV arrived from a prefill replica
        if self.kv_used > self.peak_kv:
            self.peak_kv = self.kv_used

    def _join_decode(self, r: _Req) -> None:
        # KV holds the prompt once and each sample's tokens; attention reads
        # the prompt once per sample
        r.iter0 = self.iter
        r.kv0 = r.kv
        r.c0 = r.n * (r.inp + r.gen)
        r.gen0 = r.gen
        self.b += r.n
        self.C += r.c0
        self._seq += 1
        heapq.heappush(self.heap, (self.iter + (r.out - r.gen), self._seq, r, r.epoch))

    def _advance(self, k: int) -> None:
        """k decode steps have run."""
        self.iter += k
        self.C += self.b * k
        self.kv_used += self.b * k
        if self.kv_used > self.peak_kv:
            self.peak_kv = self.kv_used
        heap = self.heap
        now = self.env.now
        while heap and heap[0][0] <= self.iter:
            _, _, r, epoch = heapq.heappop(heap)
            if epoch != r.epoch:
                continue
            steps = self.iter - r.iter0
            r.gen = r.gen0 + steps
            self.b -= r.n
            self.C -= r.c0 + r.n * steps
            self.kv_used -= r.kv0 + r.n * steps
            del self.admitted[r]
            r.kv = 0
            self._finish(r, now)
        # drop stale heap tops so heap[0] is a live completion
        while heap and heap[0][3] != heap[0][2].epoch:
            heapq.heappop(heap)

    def _prefill_done(self, r: _Req) -> None:
        now = self.env.now
        r.gen += 1
        if math.isnan(r.first):
            r.first = now
        if self.prefix is not None and r.hashes:
            self._remember(r.hashes)
        if r.gen >= r.out:
            del self.admitted[r]
            self.kv_used -= r.kv
            r.kv = 0
            self._finish(r, now)
        elif self.role == "prefill":
            del self.admitted[r]
            self.sim.transfer(self, r)
        else:
            self._join_decode(r)

    def _finish(self, r: _Req, now: float) -> None:
        self.outstanding -= 1
        if math.isnan(r.gen_end):
            r.gen_end = now
        if r.verify_left > 0:
            r.verify_left -= 1
            self.sim.verify(self, r)
            return
        r.finish = now
        self.sim.finished += 1

    def release(self, r: _Req) -> None:
        """A prefill replica's KV of r is free again (its transfer is done)."""
        self.kv_used -= r.kv
        r.kv = 0
        self.outstanding -= 1
        self.kick()

    # ------------------------------------------------------------ prefix cache
    def match(self, hashes) -> int:
        """Leading prompt blocks of `hashes` held in this replica's cache."""
        n = 0
        cache = self.prefix
        for h in hashes:
            if h in cache:
                n += 1
            else:
                break
        return n

    def _remember(self, hashes) -> None:
        cache = self.prefix
        for h in hashes:
            if h in cache:
                cache.move_to_end(h)
            else:
                cache[h] = None
        while len(cache) > self.prefix_blocks:
            cache.popitem(last=False)


# ------------------------------------------------------------ the simulation
class _Sim:
    def __init__(self, spec: RequestSimSpec, cfg: ServingConfig, trace: RequestTrace, seed: int):
        self.spec = spec
        self.cfg = cfg
        self.trace = trace
        self.env = simpy.Environment()
        self.cost = _StepCost(cfg)
        plan = memory_plan(cfg)
        self.kv_capacity = int(spec.kv_capacity_tokens if spec.kv_capacity_tokens is not None
                               else plan.kv_capacity_tokens)
        self.max_batch = int(batch_limit(cfg))
        self.max_num_tokens = int(cfg.max_num_tokens)
        self.chunked = bool(spec.chunked_prefill)
        self.hit_rate = float(spec.prefix_cache_hit_rate)
        self.hash_cache = self.hit_rate == 0 and trace.hash_ids is not None
        self.block_tokens = int(trace.block_tokens)
        self.rng = np.random.default_rng([int(seed), 0x5EED])
        self.finished = 0
        self.rr = 0
        self.max_seq = int(cfg.model.max_seq)
        if spec.disaggregated:
            self.front = [_Replica(self, i, "prefill") for i in range(spec.prefill_replicas)]
            self.back = [_Replica(self, spec.prefill_replicas + i, "decode") for i in range(spec.decode_replicas)]
            gpus = replica_gpus(cfg)
            domain = cfg.system.nvlink_domain_gpus
            both = (spec.prefill_replicas + spec.decode_replicas) * gpus
            # pools inside one NVLink domain move KV over NVLink, otherwise over the scale-out fabric
            self.levels = levels_for_group(cfg.system, cfg.fabric, cfg.gpu, 2, stride=1 if both <= domain else domain)
        else:
            self.front = [_Replica(self, i, "colocated") for i in range(spec.replicas)]
            self.back = []
        self.replicas = self.front + self.back
        self.reqs: list[_Req] = []
        self.rejected = 0

    # ---------------------------------------------------------------- arrivals
    def _arrivals(self, i: int, _ev=None) -> None:
        """Admit every request due now, from index i, then wait for the next."""
        env = self.env
        now = env.now
        arrival, inp, out = self._arrival, self._inp, self._out
        hashes = self.trace.hash_ids if self.hash_cache else None
        samples = int(self.spec.samples)
        verifier_passes = int(self.spec.verifier_passes)
        depth = int(self.spec.search_depth)
        n = len(arrival)
        while i < n and arrival[i] <= now:
            r = _Req(i, arrival[i], inp[i], out[i], samples)
            vmax = 0
            if verifier_passes:
                # after search step s of `depth`, every candidate is scored over
                # prompt + its text so far (workloads.reasoning.request_work)
                r.vplan = [(samples * (r.inp + (r.out * s + depth - 1) // depth), samples)
                           for s in range(1, depth + 1) for _ in range(verifier_passes)]
                r.verify_left = len(r.vplan)
                vmax = r.vplan[-1][0] + 1
            self.reqs.append(r)
            i += 1
            if (max(r.inp + samples * r.out, vmax) > self.kv_capacity or r.inp + r.out > self.max_seq
                    or samples > self.max_batch):
                self.rejected += 1
                continue
            if hashes is not None:
                r.hashes = hashes[i - 1]
            self.route(r)
        if i < n:
            ev = env.timeout(arrival[i] - now)
            ev.callbacks.append(partial(self._arrivals, i))

    def route(self, r: _Req) -> None:
        pool = self.front
        n = len(pool)
        policy = self.spec.router
        if n == 1:
            rep = pool[0]
        elif policy == "round-robin":
            rep = pool[self.rr % n]
            self.rr += 1
        elif policy == "random":
            rep = pool[int(self.rng.integers(n))]
        elif policy == "kv-aware" and r.hashes:
            best, rep = None, pool[0]
            for p in pool:
                key = (-p.match(r.hashes), p.outstanding, p.idx)
                if best is None or key < best:
                    best, rep = key, p
        elif policy == "kv-aware":
            rep = min(pool, key=lambda p: (p.kv_used + p.queued_tokens, p.outstanding, p.idx))
        else:
            rep = min(pool, key=lambda p: (p.outstanding, p.idx))
        r.replica = rep.idx
        # prefix cache: a fixed share of every prompt, or the leading blocks this replica holds
        if self.hit_rate > 0:
            r.cached = min(int(self.hit_rate * r.inp), r.inp - 1)
        elif rep.prefix is not None and r.hashes:
            r.cached = min(rep.match(r.hashes) * self.block_tokens, r.inp - 1)
        r.target = r.inp
        r.done = r.cached
        r.kvneed = r.inp + r.n
        rep.outstanding += 1
        rep.routed += 1
        rep.enqueue(r)

    # ------------------------------------------------------- disaggregation
    def verify(self, rep: _Replica, r: _Req) -> None:
        """Turn r into its next verifier pass: a prompt-only request over the
        prompt and the candidates' text, on the same replica (colocated) or
        the least busy prefill replica (disaggregated)."""
        r.inp, r.pseqs = r.vplan.pop(0)
        r.out = 1
        r.n = 1
        r.gen = 0
        r.cached = 0
        r.hashes = None
        r.target = r.inp
        r.done = 0
        r.kvneed = r.inp + 1
        dst = rep if rep.role == "colocated" else min(self.front, key=lambda p: (p.outstanding, p.idx))
        dst.outstanding += 1
        dst.enqueue(r)

    def transfer(self, src: _Replica, r: _Req) -> None:
        """Move r's KV from prefill replica src to a decode replica."""
        dt = kv_transfer_time(self.cfg, r.kv, self.levels)
        ev = self.env.timeout(dt)
        ev.callbacks.append(lambda _e, src=src, r=r: self._arrive_decode(src, r))

    def _arrive_decode(self, src: _Replica, r: _Req) -> None:
        src.release(r)
        pool = self.back
        if self.spec.router == "round-robin":
            dst = pool[self.rr % len(pool)]
            self.rr += 1
        elif self.spec.router == "kv-aware":
            dst = min(pool, key=lambda p: (p.kv_used + p.queued_tokens, p.outstanding, p.idx))
        else:
            dst = min(pool, key=lambda p: (p.outstanding, p.idx))
        r.decode_replica = dst.idx
        r.target = 0
        r.done = 0
        r.kvneed = r.inp + r.n * r.gen
        dst.outstanding += 1
        dst.routed += 1
        dst.enqueue(r)

    # ---------------------------------------------------------------- run
    def run(self):
        self._arrival = self.trace.arrival_s.tolist()
        self._inp = self.trace.input_tokens.tolist()
        self._out = self.trace.output_tokens.tolist()
        if self._arrival:
            ev = self.env.timeout(max(0.0, self._arrival[0]))
            ev.callbacks.append(partial(self._arrivals, 0))
        if self.spec.horizon_s is not None:
            self.env.run(until=self.spec.horizon_s)
        else:
            self.env.run()
        return self.env.now


# ------------------------------------------------------------- public API
def serving_config(spec: RequestSimSpec, catalogs) -> ServingConfig:
    """The ServingConfig of one replica of `spec`."""
    hw = catalogs.hardware
    where = spec.where
    system = hw.system(spec.system, f"{where}.system")
    gpu = hw.gpu(spec.gpu, f"{where}.gpu") if spec.gpu else hw.system_gpu(system)
    fabric = hw.fabric(spec.fabric or system.fabric, f"{where}.fabric")
    model = catalogs.models.get(spec.model, f"{where}.model")
    return ServingConfig(model=model, gpu=gpu, system=system, fabric=fabric, tp=spec.tp, pp=spec.pp, ep=spec.ep,
                         precision=spec.precision, kv_precision=spec.kv_precision, max_batch=spec.max_batch,
                         max_num_tokens=spec.max_num_tokens, attention_dp=spec.attention_dp)


def build_trace(spec: RequestSimSpec, seed: int = 0) -> RequestTrace:
    """The request stream of `spec`: its trace, or one drawn from its
    arrival process with a generator seeded from `seed`."""
    if spec.trace is not None:
        return spec.trace
    if spec.requests_per_s is None:
        raise InputError("a request simulation needs a trace or requests_per_s", spec.where,
                         "give 'trace: {path: ..., format: ...}' or 'requests_per_s'")
    if spec.duration_s is None and spec.count is None:
        raise InputError("a synthetic request stream needs a duration", f"{spec.where}.duration",
                         "set the workload's 'duration' (e.g. 10m)")
    expected = spec.requests_per_s * (spec.duration_s if spec.duration_s is not None else 0.0)
    if spec.count is None and expected > MAX_SYNTHETIC_REQUESTS:
        raise InputError(f"{expected:,.0f} requests ({spec.requests_per_s:g}/s over {spec.duration_s:g} s) are too many "
                         "for request mode", f"{spec.where}.duration",
                         "set a shorter 'duration' (minutes to hours) or use mode: fleet")
    rng = np.random.default_rng([int(seed), 0xA77])
    return synthetic_trace(spec.requests_per_s, spec.input_tokens, spec.output_tokens, rng,
                           duration_s=spec.duration_s, count=spec.count, process=spec.arrival_process,
                           cv=spec.arrival_cv, diurnal=spec.diurnal, start_s=spec.start_s,
                           base_dir=spec.base_dir, where=spec.where)


def _check(spec: RequestSimSpec) -> None:
    w = spec.where
    if spec.router not in ROUTERS:
        raise unknown_name("router", spec.router, ROUTERS, f"{w}.router")
    if spec.disaggregated:
        pass
    elif spec.prefill_replicas or spec.decode_replicas:
        raise InputError("disaggregated serving needs both prefill_replicas and decode_replicas",
                         f"{w}.disaggregated", "give both, each 1 or more")
    elif not (isinstance(spec.replicas, int) and spec.replicas >= 1):
        raise InputError(f"replicas is {spec.replicas!r}", f"{w}.replicas", "give 1 or more")
    if not 0 <= spec.prefix_cache_hit_rate <= 1:
        raise InputError(f"prefix_cache_hit_rate is {spec.prefix_cache_hit_rate!r}", f"{w}.prefix_cache_hit_rate",
                         "give a fraction from 0 to 1")
    if not (isinstance(spec.samples, int) and spec.samples >= 1):
        raise InputError(f"samples is {spec.samples!r}", f"{w}.samples_per_request", "give 1 or more")
    if not (isinstance(spec.search_depth, int) and spec.search_depth >= 1):
        raise InputError(f"search depth is {spec.search_depth!r}", f"{w}.search.depth", "give 1 or more")
    if not (isinstance(spec.verifier_passes, int) and spec.verifier_passes >= 0):
        raise InputError(f"verifier_passes is {spec.verifier_passes!r}", f"{w}.verifier_passes", "give 0 or more")
    for name in ("slo_ttft_s", "slo_tpot_s"):
        v = getattr(spec, name)
        if not (v > 0):
            raise InputError(f"{name} is {v!r}", f"{w}.slo", "give a latency greater than zero")
    if spec.horizon_s is not None and not spec.horizon_s > 0:
        raise InputError(f"horizon is {spec.horizon_s!r}", f"{w}.duration", "give a duration greater than zero")


def simulate_requests(spec: RequestSimSpec, catalogs=None, seed: int = 0) -> RequestSimResult:
    """Run the request-level simulation of `spec` and return per-request
    rows, per-replica rows and the summary block (see RequestSimResult).
    catalogs: sim.catalogs.Catalogs (None: the shipped ones). The same spec
    and seed give identical results."""
    import pandas as pd

    if catalogs is None:
        from sim.catalogs import load_catalogs
        catalogs = load_catalogs()
    _check(spec)
    cfg = serving_config(spec, catalogs)
    trace = build_trace(spec, seed)
    sim = _Sim(spec, cfg, trace, seed)
    end = sim.run()

    n = len(sim.reqs)
    arrival = np.array([r.arrival for r in sim.reqs], dtype=np.float64)
    first = np.array([r.first for r in sim.reqs], dtype=np.float64)
    finish = np.array([r.finish for r in sim.reqs], dtype=np.float64)
    gen_end = np.array([r.gen_end for r in sim.reqs], dtype=np.float64)
    replica = np.array([r.replica for r in sim.reqs], dtype=np.int64)
    state = np.where(~np.isnan(finish), "completed", np.where(replica < 0, "rejected", "unfinished")).astype(object)
    # requests never reached by the clock (horizon before their arrival) are unfinished too
    missing = len(trace) - n
    out_tokens = trace.output_tokens[:n]
    in_tokens = trace.input_tokens[:n]
    ttft = first - arrival
    e2e = finish - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where((out_tokens >= 2) & ~np.isnan(finish), (gen_end - first) / np.maximum(out_tokens - 1, 1),
                        np.nan)
    frame = pd.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": arrival,
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "replica": replica,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "state": state,
        "decode_replica": np.array([r.decode_replica for r in sim.reqs], dtype=np.int64),
        "cached_tokens": np.array([r.cached for r in sim.reqs], dtype=np.int64),
        "preemptions": np.array([r.preemptions for r in sim.reqs], dtype=np.int64),
        "first_token_s": first,
        "finish_s": finish,
    })
    if missing:
        rest = pd.DataFrame({
            "request_id": np.arange(n, len(trace), dtype=np.int64), "arrival_s": trace.arrival_s[n:],
            "input_tokens": trace.input_tokens[n:], "output_tokens": trace.output_tokens[n:],
            "replica": -1, "ttft_s": np.nan, "tpot_s": np.nan, "e2e_s": np.nan, "state": "unfinished",
            "decode_replica": -1, "cached_tokens": 0, "preemptions": 0, "first_token_s": np.nan, "finish_s": np.nan})
        frame = pd.concat([frame, rest], ignore_index=True)
    met = ((frame["state"] == "completed") & (frame["ttft_s"] <= spec.slo_ttft_s)
           & (frame["tpot_s"].isna() | (frame["tpot_s"] <= spec.slo_tpot_s)))
    frame.insert(frame.columns.get_loc("state") + 1, "slo_met", met.to_numpy(dtype=bool))
    span_end = float(end)
    replicas = pd.DataFrame({
        "replica": [p.idx for p in sim.replicas],
        "role": [p.role for p in sim.replicas],
        "requests": [p.routed for p in sim.replicas],
        "iterations": [p.iter for p in sim.replicas],
        "busy_s": [p.busy_s for p in sim.replicas],
        "busy_fraction": [p.busy_s / span_end if span_end > 0 else 0.0 for p in sim.replicas],
        "decode_batch_mean": [p.batch_time / p.busy_s if p.busy_s > 0 else 0.0 for p in sim.replicas],
        "preemptions": [p.preemptions for p in sim.replicas],
        "peak_kv_tokens": [p.peak_kv for p in sim.replicas],
        "kv_tokens_in_use": [p.kv_used for p in sim.replicas],
        "kv_capacity_tokens": [p.cap for p in sim.replicas],
    })
    summary = summarize(frame, spec, cfg, span_end, replicas)
    return RequestSimResult(frame, summary, replicas, cfg)


def _pct(values: np.ndarray, q: float) -> Optional[float]:
    v = values[~np.isnan(values)]
    return float(np.percentile(v, q)) if len(v) else None


def summarize(frame, spec: RequestSimSpec, cfg: ServingConfig, end_s: float, replicas=None) -> dict:
    """The inference block of summary.json from the per-request rows."""
    done = frame["state"].to_numpy() == "completed"
    ttft = frame["ttft_s"].to_numpy(dtype=np.float64)
    tpot = frame["tpot_s"].to_numpy(dtype=np.float64)
    e2e = frame["e2e_s"].to_numpy(dtype=np.float64)
    out = frame["output_tokens"].to_numpy()
    inp = frame["input_tokens"].to_numpy()
    arrival = frame["arrival_s"].to_numpy(dtype=np.float64)
    n = len(frame)
    met = frame["slo_met"].to_numpy(dtype=bool)
    t0 = float(arrival.min()) if n else 0.0
    finish = frame["finish_s"].to_numpy(dtype=np.float64)
    t1 = float(np.nanmax(finish)) if done.any() else end_s
    span = max(t1 - t0, 1e-12)
    n_replicas = spec.prefill_replicas + spec.decode_replicas if spec.disaggregated else spec.replicas
    gpus = n_replicas * replica_gpus(cfg)
    out_done = float(out[done].sum()) * spec.samples
    summary = {
        "mode": "request",
        "model": cfg.model.name,
        "gpu": cfg.gpu.name,
        "replicas": n_replicas,
        "gpus": gpus,
        "tp": cfg.tp, "pp": cfg.pp, "ep": cfg.ep,
        "precision": cfg.precision,
        "router": spec.router,
        "disaggregated": spec.disaggregated,
        "requests_total": n,
        "requests_completed": int(done.sum()),
        "requests_unfinished": int((frame["state"] == "unfinished").sum()),
        "requests_rejected": int((frame["state"] == "rejected").sum()),
        "ttft_mean_s": float(np.mean(ttft[done])) if done.any() else None,
        "ttft_p50_s": _pct(ttft[done], 50),
        "ttft_p90_s": _pct(ttft[done], 90),
        "ttft_p99_s": _pct(ttft[done], 99),
        "tpot_mean_s": float(np.nanmean(tpot[done])) if np.any(~np.isnan(tpot[done])) else None,
        "tpot_p50_s": _pct(tpot[done], 50),
        "tpot_p90_s": _pct(tpot[done], 90),
        "tpot_p99_s": _pct(tpot[done], 99),
        "e2e_mean_s": float(np.mean(e2e[done])) if done.any() else None,
        "e2e_p50_s": _pct(e2e[done], 50),
        "e2e_p99_s": _pct(e2e[done], 99),
        "slo_ttft_s": spec.slo_ttft_s,
        "slo_tpot_s": spec.slo_tpot_s,
        "slo_attainment": float(met.sum() / n) if n else None,
        "goodput_requests_per_s": float(met.sum() / span) if n else 0.0,
        "requests_per_s": float(done.sum() / span) if n else 0.0,
        "output_tokens_per_s": out_done / span,
        "input_tokens_per_s": float(inp[done].sum()) / span,
        "output_tokens_per_s_per_gpu": out_done / span / gpus if gpus else 0.0,
        "simulated_s": float(end_s),
        "gpu_hours": gpus * float(end_s) / 3600.0,
        "preemptions": int(frame["preemptions"].sum()),
        "prefix_cached_tokens": int(frame["cached_tokens"].sum()),
        "kv_capacity_tokens_per_replica": int(spec.kv_capacity_tokens if spec.kv_capacity_tokens is not None
                                              else memory_plan(cfg).kv_capacity_tokens),
    }
    if replicas is not None and len(replicas):
        summary["replica_busy_fraction"] = float(replicas["busy_fraction"].mean())
        summary["decode_batch_mean"] = float((replicas["decode_batch_mean"] * replicas["busy_s"]).sum()
                                             / max(replicas["busy_s"].sum(), 1e-12))
    return summary


def combine_summaries(results) -> dict:
    """One inference block for several request-mode workloads, given as
    [(name, RequestSimResult), ...]: counts, GPUs, GPU-hours and rates add
    up (the workloads run side by side on their own replicas), percentiles
    are over every request, slo_attainment counts each request against its
    own workload's SLOs; `workloads` keeps each workload's own block."""
    import pandas as pd

    results = list(results)
    if len(results) == 1:
        return dict(results[0][1].summary)
    frame = pd.concat([res.requests for _, res in results], ignore_index=True)
    sums = [res.summary for _, res in results]
    done = frame["state"].to_numpy() == "completed"
    ttft = frame["ttft_s"].to_numpy(dtype=np.float64)[done]
    tpot = frame["tpot_s"].to_numpy(dtype=np.float64)[done]
    e2e = frame["e2e_s"].to_numpy(dtype=np.float64)[done]
    n = len(frame)
    out = {"mode": "request", "requests_total": n, "requests_completed": int(done.sum())}
    for key in ("requests_unfinished", "requests_rejected", "gpus", "replicas", "preemptions",
                "prefix_cached_tokens", "gpu_hours", "goodput_requests_per_s", "requests_per_s",
                "output_tokens_per_s", "input_tokens_per_s"):
        out[key] = sum(x.get(key) or 0 for x in sums)
    out.update({
        "ttft_mean_s": float(ttft.mean()) if done.any() else None,
        "ttft_p50_s": _pct(ttft, 50), "ttft_p90_s": _pct(ttft, 90), "ttft_p99_s": _pct(ttft, 99),
        "tpot_mean_s": float(np.nanmean(tpot)) if np.any(~np.isnan(tpot)) else None,
        "tpot_p50_s": _pct(tpot, 50), "tpot_p90_s": _pct(tpot, 90), "tpot_p99_s": _pct(tpot, 99),
        "e2e_mean_s": float(e2e.mean()) if done.any() else None,
        "e2e_p50_s": _pct(e2e, 50), "e2e_p99_s": _pct(e2e, 99),
        "slo_attainment": float(frame["slo_met"].mean()) if n else None,
        "output_tokens_per_s_per_gpu": out["output_tokens_per_s"] / out["gpus"] if out["gpus"] else 0.0,
        "simulated_s": max(x["simulated_s"] for x in sums),
        "workloads": {name: dict(res.summary) for name, res in results},
    })
    return out


REQUEST_COLUMNS = ("request_id", "arrival_s", "input_tokens", "output_tokens", "replica", "ttft_s", "tpot_s",
                   "e2e_s", "state")
"""The columns of requests.csv that scripts rely on (in this order); the
frame carries more after them."""


def write_requests_csv(result: RequestSimResult, path) -> None:
    """requests.csv: the required columns first, then the extra ones."""
    cols = list(REQUEST_COLUMNS) + [c for c in result.requests.columns if c not in REQUEST_COLUMNS]
    result.requests[cols].to_csv(path, index=False, float_format="%.6g")


# ---------------------------------------------------------- scenario glue
def spec_from_workload(workload, scenario=None, catalogs=None, index: int = 0) -> RequestSimSpec:
    """A RequestSimSpec from a scenario's `family: inference`, `mode:
    request` workload (sim.scenario.InferenceWorkload). The replicas run on
    the workload's pool (or the first pool): its system, and its fabric link
    when one is given; the cluster engine places them on that pool too
    (sim.fleet.request_pool). Trace paths are relative to the scenario file.

    The traffic window is the workload's `duration` (else end - start, else,
    for a synthetic stream, the scenario's duration): a synthetic stream
    arrives over it, a trace is cut to the arrivals inside it. With `drain`
    (the default) the clock runs until every request is done; without, it
    stops at the window's end and what is left counts as unfinished."""
    w = workload
    where = f"workloads[{index}]"
    system = fabric = None
    if scenario is not None:
        pools = scenario.cluster.pools
        pool = next((p for p in pools if p.name == w.pool), pools[0]) if w.pool else pools[0]
        system = pool.system
        fabric = pool.fabric.link
    if system is None:
        raise InputError("a request simulation needs a system", where, "give the scenario's cluster.system")
    trace = None
    base_dir = getattr(scenario, "base_dir", None) if scenario is not None else None
    if w.trace is not None:
        path = scenario.resolve(w.trace.path) if scenario is not None else w.trace.path
        trace = load_trace(path, getattr(w.trace, "format", None), time_scale=w.trace.time_scale,
                           limit=w.trace.limit,
                           block_tokens=getattr(w.trace, "block_tokens", None) or 512)
    duration = w.duration
    if duration is None and w.end is not None:
        duration = w.end - w.start
    if duration is None and trace is None and scenario is not None:
        duration = scenario.duration
    if trace is not None and duration is not None:
        trace = trace.head(int(np.searchsorted(trace.arrival_s, duration, side="left")))
        if len(trace) == 0:
            raise InputError(f"no request of the trace arrives within the duration ({duration:g} s)",
                             f"{where}.duration", "lengthen the duration or drop it to replay the whole trace")
    horizon = None
    if not getattr(w, "drain", True):
        horizon = duration if duration is not None else (float(trace.arrival_s[-1]) if trace is not None else None)
    dis = w.disaggregated
    # candidates decoding side by side: samples x search branching (workloads.reasoning.TestTimeCompute)
    samples = int(getattr(w, "samples_per_request", 1) or 1)
    depth = 1
    if getattr(w, "search", None) is not None:
        samples *= w.search.branching
        depth = w.search.depth
    return RequestSimSpec(
        model=w.model, system=system, fabric=fabric, replicas=w.replicas, tp=w.tp, pp=w.pp, ep=w.ep,
        precision=w.precision, kv_precision=getattr(w, "kv_precision", None),
        attention_dp=bool(getattr(w, "attention_dp", False)),
        max_batch=w.max_batch, max_num_tokens=w.max_num_tokens,
        chunked_prefill=bool(getattr(w, "chunked_prefill", True)), router=w.router,
        prefix_cache_hit_rate=w.prefix_cache_hit_rate, samples=samples,
        verifier_passes=int(getattr(w, "verifier_passes", 0) or 0), search_depth=depth,
        prefill_replicas=dis.prefill_replicas if dis else 0, decode_replicas=dis.decode_replicas if dis else 0,
        slo_ttft_s=w.slo.ttft, slo_tpot_s=w.slo.tpot, trace=trace, requests_per_s=w.requests_per_s,
        input_tokens=w.input_tokens, output_tokens=w.output_tokens, arrival_process=w.arrival.process,
        arrival_cv=w.arrival.cv, diurnal=w.diurnal, start_s=w.start, duration_s=duration if trace is None else None,
        horizon_s=horizon, base_dir=base_dir, where=where)
