"""Scenario files: YAML (or a dict) parsed into strict pydantic models.

A scenario says what cluster exists, how it is scheduled, what fails, and
what work arrives. Unknown keys are errors that name the key and suggest
the closest known one; quantities accept units (``30d``, ``2h``, ``50ms``,
``15T`` tokens, ``1.5e12``). ``load_scenario`` is the one entry point; it
also applies dotted overrides (``cluster.nodes=64``) for sweeps and checks
names against the catalogs (systems, fabrics, models) and that every job
fits the cluster.

Top-level keys: name, seed, duration, cluster, scheduler, failures, catalog,
power, cost, outputs, workloads. Every default is in README's scenario
reference; keep the two in step.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from workloads.errors import InputError, close_matches
from workloads.files import read_yaml
from workloads.units import parse_count, parse_duration


def _duration(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_duration(v)
    except InputError as exc:
        raise ValueError(f"{exc.what}; {exc.fix}") from None


def _count(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return parse_count(v)
    except InputError as exc:
        raise ValueError(f"{exc.what}; {exc.fix}") from None


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds; accepts 90, '50ms', '2h', '30d', '1y'."""
Count = Annotated[float, BeforeValidator(_count)]
"""A number; accepts 1.5e12, '15T', '405B', '2k'."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------- cluster
class FabricSpec(Strict):
    """Scale-out network of a pool. oversubscription is one ratio for every
    tier above the leaf, or per tier {leaf, spine, core} (1 = non-blocking)."""
    link: Optional[str] = None
    oversubscription: Union[float, dict[Literal["leaf", "spine", "core"], float]] = 1.0

    @field_validator("oversubscription", mode="before")
    @classmethod
    def _tiers(cls, v):
        if isinstance(v, dict):
            for key in v:
                if key not in ("leaf", "spine", "core"):
                    near = close_matches(str(key), ["leaf", "spine", "core"], n=1)
                    hint = f"did you mean {near[0]!r}?" if near else "use leaf, spine or core"
                    raise ValueError(f"unknown tier {key!r}; {hint}")
        return v

    @field_validator("oversubscription")
    @classmethod
    def _ratio(cls, v):
        values = v.values() if isinstance(v, dict) else [v]
        if any(x < 1 for x in values):
            raise ValueError("oversubscription ratios must be >= 1 (1 = non-blocking, 2 = 2:1)")
        return v

    def tier_ratios(self) -> dict[str, float]:
        """Ratio per tier: a single number applies to leaf uplinks and above."""
        if isinstance(self.oversubscription, dict):
            return {t: float(self.oversubscription.get(t, 1.0)) for t in ("leaf", "spine", "core")}
        r = float(self.oversubscription)
        return {"leaf": r, "spine": r, "core": r}


class PoolSpec(Strict):
    """A homogeneous group of nodes of one system type."""
    name: Optional[str] = None
    system: str
    nodes: int = Field(gt=0)
    fabric: FabricSpec = Field(default_factory=FabricSpec)
    spare_nodes: int = Field(default=0, ge=0)


class ClusterSpec(Strict):
    """One pool written inline (system, nodes, fabric) or several in `pools`."""
    system: Optional[str] = None
    nodes: Optional[int] = Field(default=None, gt=0)
    fabric: Optional[FabricSpec] = None
    spare_nodes: int = Field(default=0, ge=0)
    pools: list[PoolSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_form(self):
        inline = self.system is not None or self.nodes is not None
        if inline and self.pools:
            raise ValueError("give either system/nodes or pools, not both")
        if inline:
            if self.system is None or self.nodes is None:
                raise ValueError("a cluster needs both 'system' and 'nodes' (or a 'pools' list)")
            self.pools = [PoolSpec(name=self.system, system=self.system, nodes=self.nodes,
                                   fabric=self.fabric or FabricSpec(), spare_nodes=self.spare_nodes)]
        if not self.pools:
            raise ValueError("the cluster is empty: give 'system' and 'nodes', or 'pools'")
        for i, p in enumerate(self.pools):
            if p.name is None:
                p.name = p.system if sum(q.system == p.system for q in self.pools) == 1 else f"{p.system}-{i}"
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError("pool names must be unique")
        return self


# -------------------------------------------------------------- scheduler
class TenantSpec(Strict):
    weight: float = Field(default=1.0, gt=0)
    quota_gpus: Optional[int] = Field(default=None, gt=0)


class SchedulerSpec(Strict):
    """policy: fifo | priority | backfill | fair-share | sjf. backfill: EASY
    backfill on top of any order (policy backfill = fifo order + backfill);
    backfill_window: waiting jobs after the head one pass considers."""
    policy: Literal["fifo", "priority", "backfill", "fair-share", "sjf"] = "fifo"
    preemption: bool = False
    tenants: dict[str, TenantSpec] = Field(default_factory=dict)
    placement: Literal["topology", "first-fit"] = "topology"
    backfill: Optional[bool] = None
    backfill_window: int = Field(default=100, gt=0)


# --------------------------------------------------------------- failures
class FailuresSpec(Strict):
    """Failure model. gpu_mtbf_h/node_mtbf_h of 0 mean none of that kind;
    census: 'llama3' draws interruptions by cause from the Llama 3 table
    (16,384 H100, 54 days), scaled to the cluster size."""
    gpu_mtbf_h: float = Field(default=0.0, ge=0)
    node_mtbf_h: float = Field(default=0.0, ge=0)
    census: Optional[Literal["llama3"]] = None
    checkpoint_interval: Duration = 3 * 3600.0
    checkpoint_cost: Duration = 120.0
    restart_delay: Duration = 600.0
    repair_time: Duration = 4 * 3600.0

    @property
    def enabled(self) -> bool:
        return self.gpu_mtbf_h > 0 or self.node_mtbf_h > 0 or self.census is not None


# ------------------------------------------------------- power, cost, output
class PowerSpec(Strict):
    pue: float = Field(default=1.3, ge=1.0)
    electricity_usd_per_kwh: float = Field(default=0.08, ge=0)


class CostSpec(Strict):
    """gpu_hour_usd: rental price per GPU-hour (one number, or per GPU
    name); when absent, capex is amortized over amortization_years."""
    gpu_hour_usd: Union[None, float, dict[str, float]] = None
    amortization_years: float = Field(default=4.0, gt=0)


class OutputsSpec(Strict):
    sample_interval: Duration = 3600.0
    parquet: bool = True
    report: bool = True


# -------------------------------------------------------------- workloads
class TokenDist(Strict):
    """A token count: fixed, lognormal (mean, sigma), or empirical from a
    trace column; thinking + answer splits a reasoning model's output."""
    mean: Optional[Count] = None
    distribution: Literal["fixed", "lognormal", "empirical"] = "fixed"
    sigma: float = Field(default=0.8, gt=0)
    path: Optional[str] = None
    column: Optional[str] = None
    thinking: Optional[Count] = None
    answer: Optional[Count] = None

    @model_validator(mode="after")
    def _complete(self):
        if self.distribution == "empirical" and not self.path:
            raise ValueError("an empirical distribution needs 'path' (a trace file)")
        if self.mean is None and self.distribution != "empirical":
            if self.thinking is not None or self.answer is not None:
                self.mean = float(self.thinking or 0) + float(self.answer or 0)
            else:
                raise ValueError("give 'mean' (or thinking/answer)")
        return self


def _token_dist(v):
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return {"mean": v}
    return v


Tokens = Annotated[TokenDist, BeforeValidator(_token_dist)]


class SLOSpec(Strict):
    ttft: Duration = 2.0
    tpot: Duration = 0.2


class AutoscalerSpec(Strict):
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: Optional[int] = Field(default=None, gt=0)
    scale_up_delay: Duration = 300.0
    interval: Duration = 900.0
    headroom: float = Field(default=1.1, ge=1.0)


class TraceFile(Strict):
    """A request trace (request mode). format None: from the extension and
    header. time_scale multiplies arrival times (0.5 = twice as fast);
    block_tokens: tokens per Mooncake hash_ids block."""
    path: str
    format: Optional[Literal["azure-llm", "mooncake", "csv"]] = None
    time_scale: float = Field(default=1.0, gt=0)
    limit: Optional[int] = Field(default=None, gt=0)
    block_tokens: int = Field(default=512, gt=0)


class ArrivalSpec(Strict):
    process: Literal["poisson", "gamma"] = "poisson"
    cv: float = Field(default=1.0, gt=0)


class DisaggregationSpec(Strict):
    prefill_replicas: int = Field(gt=0)
    decode_replicas: int = Field(gt=0)


class SearchSpec(Strict):
    branching: int = Field(default=1, ge=1)
    depth: int = Field(default=1, ge=1)


class GrowthSpec(Strict):
    """Monthly growth factors (1.0 = flat) of request rate and tokens per query."""
    requests_per_month: float = Field(default=1.0, gt=0)
    tokens_per_month: float = Field(default=1.0, gt=0)


def _growth(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return {"requests_per_month": v}
    return v


class _JobCommon(Strict):
    name: Optional[str] = None
    tenant: str = "default"
    priority: int = 0
    pool: Optional[str] = None


class InferenceWorkload(_JobCommon):
    """Serving. mode 'fleet' (default): months of traffic as replicas in
    time slices with autoscaling; mode 'request': per-request simulation."""
    family: Literal["inference"]
    model: str
    mode: Literal["fleet", "request"] = "fleet"
    requests_per_s: Optional[float] = Field(default=None, gt=0)
    diurnal: float = Field(default=0.0, ge=0, le=1)
    growth: Annotated[GrowthSpec, BeforeValidator(_growth)] = Field(default_factory=GrowthSpec)
    input_tokens: Tokens = Field(default_factory=lambda: TokenDist(mean=1000))
    output_tokens: Tokens = Field(default_factory=lambda: TokenDist(mean=300))
    samples_per_request: int = Field(default=1, ge=1)
    search: Optional[SearchSpec] = None
    verifier_passes: int = Field(default=0, ge=0)
    slo: SLOSpec = Field(default_factory=SLOSpec)
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    precision: Literal["bf16", "fp16", "fp8", "fp4"] = "fp8"
    start: Duration = 0.0
    end: Optional[Duration] = None
    autoscaler: AutoscalerSpec = Field(default_factory=AutoscalerSpec)
    # request mode
    trace: Optional[TraceFile] = None
    arrival: ArrivalSpec = Field(default_factory=ArrivalSpec)
    replicas: int = Field(default=1, ge=1)
    router: Literal["round-robin", "least-outstanding", "kv-aware", "random"] = "least-outstanding"
    max_batch: Optional[int] = Field(default=None, gt=0)
    max_num_tokens: int = Field(default=8192, gt=0)
    chunked_prefill: bool = True
    kv_precision: Optional[Literal["bf16", "fp16", "fp8", "fp4"]] = None
    attention_dp: bool = False
    prefix_cache_hit_rate: float = Field(default=0.0, ge=0, le=1)
    disaggregated: Optional[DisaggregationSpec] = None
    duration: Optional[Duration] = None
    drain: bool = True

    @model_validator(mode="after")
    def _rate_or_trace(self):
        if self.trace is None and self.requests_per_s is None:
            raise ValueError("an inference workload needs 'requests_per_s' or a 'trace'")
        return self


class ArrivalWindow(Strict):
    process: Literal["poisson", "burst", "growth"] = "poisson"
    start: Duration = 0.0
    end: Optional[Duration] = None
    growth: float = Field(default=2.0, gt=0)


class RoadmapSpec(Strict):
    """A frontier-lab roadmap: a new pretraining run every `every`, each
    `growth_per_year`-fold more compute than a year earlier."""
    start_compute: Count
    growth_per_year: float = Field(default=4.0, gt=0)
    every: Duration = 6 * 30.4375 * 86400.0
    rule: Literal["chinchilla", "fit"] = "chinchilla"
    fit: Literal["chinchilla", "epoch"] = "chinchilla"
    count: Optional[int] = Field(default=None, gt=0)


class PretrainingWorkload(_JobCommon):
    """One pretraining run (model + tokens, params + tokens, or compute)
    or, with `roadmap`, a series of them."""
    family: Literal["pretraining"]
    model: Optional[str] = None
    params: Optional[Count] = None
    tokens: Optional[Count] = None
    compute: Optional[Count] = None
    gpus: int = Field(gt=0)
    submit: Duration = 0.0
    deadline: Optional[Duration] = None
    seq_len: int = Field(default=8192, gt=0)
    global_batch_tokens: Optional[Count] = None
    precision: Literal["bf16", "fp8"] = "bf16"
    roadmap: Optional[RoadmapSpec] = None
    rule: Literal["chinchilla", "fit"] = "chinchilla"
    fit: Literal["chinchilla", "epoch"] = "chinchilla"

    @model_validator(mode="after")
    def _sized(self):
        if self.roadmap is None and self.compute is None and self.tokens is None:
            raise ValueError("a pretraining run needs 'tokens' (with model or params), 'compute', or a 'roadmap'")
        if self.model is None and self.params is None and self.compute is None and self.roadmap is None:
            raise ValueError("a pretraining run needs 'model', 'params' or 'compute'")
        return self


PostTrainingKind = Literal["sft", "lora", "distillation", "rl", "best_of_n", "synthetic_data", "search"]


class PostTrainingWorkload(_JobCommon):
    """A derivative ecosystem around a base model: `count` jobs of `kind`
    (or a `mix` of kinds by share) arriving over a window. With
    `after_pretraining` (a pretraining workload's name) the window is
    relative to that run's end and base_model defaults to its model."""
    family: Literal["post_training"]
    kind: Optional[PostTrainingKind] = None
    mix: dict[PostTrainingKind, float] = Field(default_factory=dict)
    base_model: Optional[str] = None
    teacher_model: Optional[str] = None
    reward_model: Optional[str] = None
    prompt_tokens: int = Field(default=512, gt=0)
    response_tokens: int = Field(default=1024, gt=0)
    count: int = Field(default=1, gt=0)
    tokens: Count = 1e9
    gpus: int = Field(gt=0)
    arrival: ArrivalWindow = Field(default_factory=ArrivalWindow)
    lora_rank: int = Field(default=16, gt=0)
    samples: int = Field(default=8, ge=1)
    rollout_ratio: float = Field(default=1.0, gt=0)
    seq_len: int = Field(default=4096, gt=0)
    precision: Literal["bf16", "fp8"] = "bf16"
    after_pretraining: Optional[str] = None

    @model_validator(mode="after")
    def _kind_or_mix(self):
        if (self.kind is None) == (not self.mix):
            raise ValueError("give exactly one of 'kind' or 'mix'")
        if self.base_model is None and self.after_pretraining is None:
            raise ValueError("a post-training workload needs 'base_model' (or 'after_pretraining'); "
                             "add 'base_model:' naming a catalog model")
        if self.mix and any(v < 0 for v in self.mix.values()):
            raise ValueError("mix shares must be >= 0")
        if self.mix and sum(self.mix.values()) <= 0:
            raise ValueError("mix shares must add up to more than 0")
        return self


class TraceWorkload(_JobCommon):
    """Replay jobs from a file; durations are taken as given."""
    family: Literal["trace"]
    path: str
    format: Literal["csv", "alibaba-openb", "helios", "acme", "philly"] = "csv"
    time_scale: float = Field(default=1.0, gt=0)
    limit: Optional[int] = Field(default=None, gt=0)


Workload = Annotated[Union[PretrainingWorkload, PostTrainingWorkload, InferenceWorkload, TraceWorkload],
                     Field(discriminator="family")]

FAMILY_MODELS = {"pretraining": PretrainingWorkload, "post_training": PostTrainingWorkload,
                 "inference": InferenceWorkload, "trace": TraceWorkload}


# ---------------------------------------------------------------- scenario
class Scenario(Strict):
    name: str = "scenario"
    seed: int = 0
    duration: Duration = 30 * 86400.0
    cluster: ClusterSpec
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    failures: Optional[FailuresSpec] = None
    catalog: Union[None, str, dict[str, Any]] = None
    power: PowerSpec = Field(default_factory=PowerSpec)
    cost: CostSpec = Field(default_factory=CostSpec)
    outputs: OutputsSpec = Field(default_factory=OutputsSpec)
    workloads: list[Workload] = Field(default_factory=list)

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, v):
        if v <= 0:
            raise ValueError("duration must be greater than zero")
        return v

    # where the scenario came from, to resolve relative paths
    base_dir: Optional[str] = Field(default=None, exclude=True)

    def resolve(self, path: str) -> str:
        """A path from the scenario, relative to the scenario file's folder."""
        p = Path(path)
        if p.is_absolute() or self.base_dir is None:
            return str(p)
        return str(Path(self.base_dir) / p)


# ------------------------------------------------------------------ loading
def set_dotted(data: dict, dotted: str, value) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists (creating dicts as needed)."""
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            try:
                idx = int(part)
                target = node[idx]
            except (ValueError, IndexError):
                raise InputError(f"no list item {part!r} in {dotted!r}", dotted,
                                 f"use an index from 0 to {len(node) - 1}") from None
            if last:
                node[idx] = value
            else:
                node = target
            continue
        if not isinstance(node, dict):
            raise InputError(f"cannot set {dotted!r}: {'.'.join(parts[:i])!r} is not a mapping", dotted,
                             "check the dotted path")
        if last:
            node[part] = value
        else:
            if part not in node or node[part] is None:
                if part == "cluster" or not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
            node = node[part]


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of `loc`."""
    cls: Any = Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if cls is Scenario and part == "workloads":
            cls = "workloads"
            continue
        if cls == "workloads":
            cls = FAMILY_MODELS.get(part)
            if cls is None:
                return None
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) else None
        if field is None:
            return None
        cls = _inner_model(field.annotation)
        if cls is None:
            return None
    return cls if isinstance(cls, type) else None


def _inner_model(annotation):
    import typing
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _path(loc: tuple) -> str:
    out = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part in FAMILY_MODELS and out and out[-1].startswith("["):
            continue  # the discriminator tag pydantic inserts
        elif part.startswith("function-") or part in ("dict[str,TenantSpec]",):
            continue
        else:
            out.append(("." if out else "") + str(part))
    return "".join(out)


def _translate(exc: ValidationError, origin: str) -> InputError:
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    where = f"{origin}: {_path(loc)}" if loc else origin
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        cls = _model_at(loc)
        known = [n for n in (cls.model_fields if cls else {}) if n != "base_dir"]
        near = close_matches(key, known, n=1)
        fix = f"did you mean {near[0]!r}?" if near else ("known keys: " + ", ".join(known) if known else "remove it")
        return InputError(f"unknown key {key!r}", where, fix)
    if kind == "missing":
        return InputError(f"missing key {str(loc[-1])!r}", where, f"add '{loc[-1]}:'")
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag")
        near = close_matches(str(tag), FAMILY_MODELS, n=1)
        fix = f"did you mean {near[0]!r}?" if near else "use one of " + ", ".join(FAMILY_MODELS)
        return InputError(f"unknown workload family {tag!r}", where, fix)
    if kind == "union_tag_not_found":
        return InputError("a workload has no 'family'", where, "add 'family:' (one of " + ", ".join(FAMILY_MODELS) + ")")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        near = close_matches(str(err.get("input")), [e.strip(" '") for e in str(expected).replace(" or ", ",").split(",")], n=1)
        fix = f"did you mean {near[0]!r}?" if near else f"use one of {expected}"
        return InputError(f"{err.get('input')!r} is not allowed", where, fix)
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return InputError(f"{err.get('input')!r} is out of range: {err['msg'].lower()}", where, "change the value")
    if kind in ("int_parsing", "int_from_float", "float_parsing", "bool_parsing", "int_type", "float_type",
                "string_type", "dict_type", "list_type", "model_type", "model_attributes_type", "bool_type"):
        return InputError(f"{err.get('input')!r} has the wrong type: {err['msg'].lower()}", where, "change the value")
    msg = err["msg"].removeprefix("Value error, ")
    if "; " in msg:
        what, fix = msg.split("; ", 1)
        return InputError(what, where, fix)
    return InputError(msg, where, "fix the value (see README's scenario reference)")


def load_scenario(source, overrides: dict | None = None, check: bool = True) -> Scenario:
    """A validated Scenario from a YAML path, a mapping, or a Scenario.

    overrides: {dotted.key: value} applied to the raw data first (sweeps).
    check: also check names against the catalogs and that jobs fit.
    """
    base_dir = None
    if isinstance(source, Scenario):
        data = source.model_dump(exclude_none=False)
        # the inline cluster form was expanded into one pool: fold it back so
        # that overrides such as cluster.nodes keep working
        pools = data["cluster"]["pools"]
        if len(pools) == 1 and pools[0]["name"] == pools[0]["system"]:
            p = pools[0]
            data["cluster"] = {"system": p["system"], "nodes": p["nodes"], "fabric": p["fabric"],
                               "spare_nodes": p["spare_nodes"]}
        else:
            data["cluster"] = {"pools": pools}
        base_dir = source.base_dir
        origin = source.name
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
        origin = "scenario"
    else:
        data = read_yaml(source, "scenario file")
        base_dir = str(Path(source).resolve().parent)
        origin = str(source)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    if "base_dir" in data and not isinstance(source, Scenario):
        raise InputError("unknown key 'base_dir'", origin, "remove it")
    try:
        scenario = Scenario(**data)
    except ValidationError as exc:
        raise _translate(exc, origin) from None
    except TypeError as exc:
        raise InputError(f"the scenario must be a mapping of keys ({exc})", origin, "see README's scenario reference") from None
    scenario.base_dir = base_dir
    if check:
        check_scenario(scenario)
    return scenario


def check_scenario(scenario: Scenario, catalogs=None):
    """Names exist in the catalogs; pools, models and job sizes make sense.
    Returns the loaded catalogs."""
    from sim.catalogs import load_catalogs

    if catalogs is None:
        cat_src = scenario.catalog
        if isinstance(cat_src, str):
            cat_src = scenario.resolve(cat_src)
        catalogs = load_catalogs(cat_src)
    hw = catalogs.hardware
    total_gpus = 0
    pool_gpus = {}
    for i, pool in enumerate(scenario.cluster.pools):
        system = hw.system(pool.system, f"cluster.pools[{i}].system" if len(scenario.cluster.pools) > 1 else "cluster.system")
        if pool.fabric.link is not None:
            hw.fabric(pool.fabric.link, f"cluster.pools[{i}].fabric.link" if len(scenario.cluster.pools) > 1 else "cluster.fabric.link")
        if pool.spare_nodes >= pool.nodes:
            raise InputError(f"spare_nodes ({pool.spare_nodes}) must be fewer than nodes ({pool.nodes})",
                             f"cluster.pools[{i}].spare_nodes", "lower spare_nodes or add nodes")
        g = (pool.nodes - pool.spare_nodes) * system.gpus_per_node
        pool_gpus[pool.name] = g
        total_gpus += g
    for i, w in enumerate(scenario.workloads):
        where = f"workloads[{i}]"
        for attr in ("model", "base_model", "teacher_model", "reward_model"):
            name = getattr(w, attr, None)
            if name:
                catalogs.models.get(name, f"{where}.{attr}")
        if w.pool is not None and w.pool not in pool_gpus:
            from workloads.errors import unknown_name
            raise unknown_name("pool", w.pool, pool_gpus, f"{where}.pool")
        limit = pool_gpus[w.pool] if w.pool else max(pool_gpus.values())
        gpus = getattr(w, "gpus", None)
        if gpus is not None and gpus > limit:
            raise InputError(f"the job asks for {gpus} GPUs but the largest pool it may use has {limit}",
                             f"{where}.gpus", f"ask for at most {limit} GPUs or add nodes")
        if getattr(w, "mode", None) == "request":
            need = w.tp * w.pp * (w.disaggregated.prefill_replicas + w.disaggregated.decode_replicas
                                  if w.disaggregated else w.replicas)
            # the replicas hold GPUs of the workload's pool, else of the first pool (sim.fleet.request_pool)
            pool_name = w.pool or scenario.cluster.pools[0].name
            if need > pool_gpus[pool_name]:
                raise InputError(f"the replicas need {need} GPUs but pool {pool_name!r} has {pool_gpus[pool_name]}",
                                 f"{where}.disaggregated" if w.disaggregated else f"{where}.replicas",
                                 "use fewer replicas or a smaller tp, or give a bigger pool")
    return catalogs
