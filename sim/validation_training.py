"""Predicted vs published training figures, one row per published run.

Reads the project's copy of the published figures
(``sim/data/validation/training.csv``: the A100-era runs the model is held
to; ``sim/data/validation/training_checks.csv``: H100/H800-era runs it is
checked against; ``sim/data/validation/training_checks_blackwell.csv``:
the same NVIDIA tables' GB200 and B200 runs, an out-of-sample check of
the Blackwell catalog entries and of the MoE costs; or any CSV with the
shared columns), rebuilds each run's
architecture from its columns, predicts it with hardware/perf_training.py
and returns one dict per row with the relative error. Nothing is keyed on
a row: every row goes through the same rules.

How each row is predicted (the same rules for every row):

- Architecture: the row's layers, hidden, heads, kv_heads, ffn, vocab (and
  optional MoE columns experts, active_experts, shared_experts, expert_ffn,
  dense_layers, head_dim). ``gated`` says SwiGLU vs GELU MLP; when the
  column is absent the MLP is taken as gated unless ffn = 4 x hidden (the
  GPT convention). A row naming a catalog model (or alias) starts from the
  catalog entry, so what the shared columns cannot say (experts, MLA,
  gating) comes from there, and the columns given override it.
- Hardware: the row's GPU on its typical system (the catalog system built
  around it; see ``hardware.perf_training.typical_system``) and that
  system's fabric.
- Layout: tp, pp, dp (and optional cp, ep, vpp, micro_batch, recompute,
  zero) as given; everything left blank is chosen by the parallelism
  search (fastest layout that fits), i.e. we assume a published run was
  tuned. With tp, pp and dp given, cp is what is left of the GPU count.
- ``stack`` names the framework's documented features (workloads.training
  STACKS: e.g. pre-FlashAttention kernels, DeepSpeed's 1F1B pipeline,
  DualPipe); blank (or a CSV without the column) means ``modern``:
  Megatron-core with Transformer Engine, FlashAttention, sequence
  parallelism, TP/DP communication overlap, fp32 gradients, bf16 MoE
  all-to-all of which half is hidden. A run on older software than that
  is then predicted as if it ran today's (too fast).
- Other optional columns and their defaults when blank or absent:
  ``precision`` bf16 (fp16 is priced as bf16); ``seq_len`` 4096;
  ``gated`` as above; ``tokens`` (gpu_hours rows) from the notes.
- Blank GPU count: DEFAULT_CLUSTER_GPUS (2,048; Meta trained LLaMA-65B on
  2,048 A100-80GB, Touvron et al. 2023a Sec. 2.4, and Llama 2 on the same
  RSC/production A100 clusters). Blank batch: ``global_batch_tokens`` or 4M
  tokens.
- Blank ``recompute`` on a ``hw_tflops_per_gpu`` row means full
  recomputation: that metric's formula is defined for it.
- Metrics, each in the row's own convention:
  ``hw_tflops_per_gpu``: Megatron's formula 96 B s l h^2 (1 + s/6h +
  V/16lh) over the predicted step time (the formula the papers used);
  ``iteration_s``: the predicted step time at the row's batch;
  ``gpu_hours``: steady-state GPU-hours for the run's tokens (``tokens``
  column, else "<N>B/T tokens" in the notes) divided by RUN_GOODPUT;
  ``mfu``, ``model_tflops_per_gpu``, ``tokens_per_s``,
  ``tokens_per_s_per_gpu``: read off the estimate.
"""
from __future__ import annotations

import csv
import re
import statistics
from importlib import resources
from typing import Optional

from hardware.perf_training import search, typical_system
from workloads.errors import InputError
from workloads.models import build_model
from workloads.training import Setup, get_stack, megatron_hw_flops_per_step

# Whole published runs (restarts, failures, evaluation, checkpointing, batch
# ramp-up) spend GPU-time outside steady-state steps. Llama 3 (Dubey et al.
# 2024, Sec. 3.3.4) reports >90% effective training time on 16K H100 with
# automated recovery; BLOOM's 1,082,990 GPU-hours over 118 days on 384 GPUs
# is the whole wall-clock allocation. A predicted steady state is therefore
# divided by this fraction before comparing with a whole-run figure.
RUN_GOODPUT = 0.90
DEFAULT_CLUSTER_GPUS = 2048
DEFAULT_BATCH_TOKENS = 4_000_000

METRICS = ("hw_tflops_per_gpu", "iteration_s", "gpu_hours", "mfu", "model_tflops_per_gpu",
           "tokens_per_s", "tokens_per_s_per_gpu")
_ARCH = ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")
_MOE = ("experts", "active_experts", "shared_experts", "expert_ffn", "dense_layers", "head_dim")


def default_path():
    return resources.files("sim") / "data" / "validation" / "training.csv"


def checks_path():
    """H100/H800-era published runs the model is checked against (not the
    set its constants were centred on)."""
    return resources.files("sim") / "data" / "validation" / "training_checks.csv"


def blackwell_checks_path():
    """GB200 / B200 runs of the same Megatron-Bridge 25.11 tables (dense and
    MoE): `gpusim validate --training-csv` on this file, or
    ``training_rows("blackwell")``."""
    return resources.files("sim") / "data" / "validation" / "training_checks_blackwell.csv"


def _num(row: dict, key: str, where: str, kind=float) -> Optional[float]:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"column {key!r} is {raw!r}, not a number", where, "write a plain number") from None
    return int(v) if kind is int else v


def _tokens(row: dict, where: str) -> float:
    t = _num(row, "tokens", where)
    if t:
        return t
    m = re.search(r"(\d+(?:\.\d+)?)\s*([BT])\s+tokens", row.get("notes", "") or "")
    if not m:
        raise InputError("a gpu_hours row needs the run's tokens", where, "add a 'tokens' column (e.g. 2e12)")
    return float(m.group(1)) * (1e9 if m.group(2) == "B" else 1e12)


def _model(row: dict, catalogs, where: str):
    name = (row.get("model") or "").strip() or "model"
    base = catalogs.models.get(name, where) if name in catalogs.models else None
    if all(not (row.get(k) or "").strip() for k in _ARCH + _MOE) and base is not None:
        return base
    fields = {}
    for k in _ARCH + _MOE:
        v = _num(row, k, where, int)
        if v is not None:
            fields[k] = v
    gated = (row.get("gated") or "").strip().lower()
    if gated:
        fields["gated"] = gated in ("true", "1", "yes")
    elif base is None:
        fields["gated"] = fields.get("ffn") != 4 * fields.get("hidden", 0)
    seq = _num(row, "seq_len", where, int)
    if seq and (base is None or seq > base.max_seq):
        fields["max_seq"] = seq
    # a catalog model named by the row keeps what the columns do not say
    # (experts, MLA, gating, ...); the columns override the rest
    return build_model(name, fields, base, where)


def predict_row(row: dict, catalogs, where: str) -> dict:
    """One published row -> {published, predicted, error, layout, ...}."""
    metric = (row.get("metric") or "").strip()
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}", where, "use one of " + ", ".join(METRICS))
    model = _model(row, catalogs, where)
    gpu, system = typical_system(catalogs.hardware, (row.get("gpu") or "").strip(), where)
    fabric = catalogs.hardware.fabric(system.fabric, where)
    gpus = _num(row, "gpus", where, int) or DEFAULT_CLUSTER_GPUS
    seq = _num(row, "seq_len", where, int) or 4096
    seqs = _num(row, "global_batch_seqs", where, int)
    if not seqs:
        tok = _num(row, "global_batch_tokens", where) or DEFAULT_BATCH_TOKENS
        seqs = max(1, round(tok / seq))
    precision = (row.get("precision") or "bf16").strip()
    precision = "bf16" if precision == "fp16" else precision
    stack_name = (row.get("stack") or "").strip() or "modern"
    setup = Setup(model=model, seq_len=seq, global_batch_seqs=seqs, precision=precision,
                  stack=get_stack(stack_name, where))
    fixed = {}
    for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero"):
        v = _num(row, k, where, int)
        if v is not None:
            fixed[k] = v
    rec = (row.get("recompute") or "").strip()
    if not rec and metric == "hw_tflops_per_gpu":
        rec = "full"        # the metric's convention: Megatron's formula assumes full recomputation
    if rec:
        fixed["recompute"] = rec
    est = search(setup, gpu, system, fabric, gpus, top=1, fixed=fixed)[0]
    published = _num(row, "value", where)
    if published is None or published <= 0:
        raise InputError("the row has no published value", where, "fill the 'value' column")
    if metric == "hw_tflops_per_gpu":
        flops = megatron_hw_flops_per_step(model.layers, model.hidden, model.vocab, seq, est.global_batch_seqs)
        predicted = flops / (est.step_time_s * est.gpus) / 1e12
    elif metric == "iteration_s":
        predicted = est.step_time_s * seqs / est.global_batch_seqs
    elif metric == "gpu_hours":
        predicted = _tokens(row, where) / est.tokens_per_s * est.gpus / 3600.0 / RUN_GOODPUT
    elif metric == "mfu":
        predicted = est.mfu
    elif metric == "model_tflops_per_gpu":
        predicted = est.model_tflops_per_gpu
    elif metric == "tokens_per_s":
        predicted = est.tokens_per_s
    else:
        predicted = est.tokens_per_s / est.gpus
    p = est.parallelism
    layout = f"tp{p.tp} pp{p.pp} cp{p.cp} ep{p.ep} dp{p.dp} mb{p.micro_batch} vpp{p.vpp} {p.recompute} zero{p.zero}"
    return {
        "family": "training", "source": row.get("source", ""), "model": model.name, "gpu": gpu.name,
        "gpus": gpus, "metric": metric, "published": published, "predicted": predicted,
        "error": (predicted - published) / published, "layout": layout, "stack": stack_name,
        "mfu": est.mfu, "step_time_s": est.step_time_s,
        "searched": sorted(set(("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero")) - set(fixed)),
    }


def training_rows(path: Optional[str] = None, catalogs=None) -> list[dict]:
    """Every row of a training CSV, predicted (see the module docstring):
    the project's A100-era set by default, ``"checks"`` for the H100/H800-era
    checks, ``"blackwell"`` for the GB200/B200 checks, else a CSV file's path."""
    from sim.catalogs import load_catalogs
    from workloads.files import read_text

    catalogs = catalogs or load_catalogs(None)
    if path is None or path in ("checks", "blackwell"):
        ref = {None: default_path, "checks": checks_path, "blackwell": blackwell_checks_path}[path]()
        text = ref.read_text(encoding="utf-8")
        origin = f"sim/data/validation/{ref.name}"
    else:
        text = read_text(path, "validation CSV")
        origin = str(path)
    reader = csv.DictReader(text.splitlines())
    need = {"model", "gpu", "metric", "value"}
    missing = need - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"missing columns {sorted(missing)}", origin, "use the columns of shared/validation/training.csv")
    return [predict_row(row, catalogs, f"{origin}: row {i}") for i, row in enumerate(reader, start=2)]


def summarize(rows: list[dict]) -> dict:
    """Median and worst |relative error| of rows."""
    errs = [abs(r["error"]) for r in rows]
    if not errs:
        return {"rows": 0, "median_abs_error": None, "worst_abs_error": None}
    return {"rows": len(errs), "median_abs_error": statistics.median(errs), "worst_abs_error": max(errs)}
