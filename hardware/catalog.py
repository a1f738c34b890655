"""GPU, system and fabric catalog: data files shipped with the package, plus
entries a user adds or overrides from a YAML file without touching code.

A user file has top-level keys ``gpus``, ``systems``, ``fabrics`` (and
``models``, read by workloads.models). An entry whose name exists is merged
over the shipped one (so ``{h100: {price_usd: 25000}}`` changes one field);
a new name must give every required field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workloads.errors import InputError, unknown_name

GIB = 2**30
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPU(_Entry):
    """One GPU model. Peaks are dense (no structured sparsity).

    nvlink_sharp: its NVSwitch can reduce in the switch (NVLink SHARP, NVSwitch
    gen3 and later: Hopper, Blackwell). cloud_usd_per_gpu_hour: a typical
    rental price, used when a scenario gives none."""
    name: str
    full_name: str = ""
    architecture: str = ""
    tflops: dict[Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp6", "fp4", "int8"], float]
    hbm_gib: float = Field(gt=0)
    hbm_tbps: float = Field(gt=0)
    nvlink_gbps_bidir: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    idle_w: float = Field(ge=0)
    nvlink_sharp: bool = False
    price_usd: Optional[float] = Field(default=None, ge=0)
    cloud_usd_per_gpu_hour: Optional[float] = Field(default=None, gt=0)
    source: str

    @model_validator(mode="after")
    def _check(self):
        if "bf16" not in self.tflops:
            raise ValueError("tflops must give at least bf16")
        if any(v <= 0 for v in self.tflops.values()):
            raise ValueError("every tflops value must be > 0")
        if self.idle_w >= self.tdp_w:
            raise ValueError("idle_w must be below tdp_w")
        return self

    def peak_flops(self, precision: str) -> float:
        """Dense peak FLOP/s at `precision`; InputError if the GPU lacks it."""
        if precision not in self.tflops:
            have = ", ".join(sorted(self.tflops))
            raise InputError(f"GPU {self.name!r} has no {precision} tensor cores", "precision",
                             f"use one of {have}")
        return self.tflops[precision] * 1e12

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gib * GIB

    @property
    def hbm_bw_Bps(self) -> float:
        return self.hbm_tbps * 1e12

    @property
    def nvlink_bw_Bps(self) -> float:
        """NVLink bandwidth per GPU, one direction, bytes/s."""
        return self.nvlink_gbps_bidir * 1e9 / 2


class System(_Entry):
    """A node type: how many GPUs, how they are linked, how it reaches the fabric."""
    name: str
    gpu: str
    gpus_per_node: int = Field(gt=0)
    nvlink_domain_gpus: int = Field(gt=0)
    nics_per_node: int = Field(gt=0)
    nic_gbps: float = Field(gt=0)
    fabric: str
    su_nodes: int = Field(gt=0)
    node_max_w: float = Field(gt=0)
    node_overhead_w: float = Field(ge=0)
    price_usd: Optional[float] = Field(default=None, ge=0)
    source: str

    @model_validator(mode="after")
    def _check(self):
        if self.nvlink_domain_gpus % self.gpus_per_node:
            raise ValueError("nvlink_domain_gpus must be a multiple of gpus_per_node")
        if self.su_nodes % (self.nvlink_domain_gpus // self.gpus_per_node):
            raise ValueError("su_nodes must hold whole NVLink domains (a multiple of "
                             "nvlink_domain_gpus / gpus_per_node)")
        if self.node_overhead_w >= self.node_max_w:
            raise ValueError("node_overhead_w must be below node_max_w")
        return self

    @property
    def nodes_per_domain(self) -> int:
        return self.nvlink_domain_gpus // self.gpus_per_node

    @property
    def nic_bw_Bps(self) -> float:
        """One NIC's line rate, one direction, bytes/s."""
        return self.nic_gbps * 1e9 / 8


class Fabric(_Entry):
    """A scale-out network family: port speed, switch radix, hop latency."""
    name: str
    full_name: str = ""
    kind: Literal["infiniband", "ethernet"]
    link_gbps: float = Field(gt=0)
    radix: int = Field(gt=1)
    hop_latency_s: float = Field(ge=0)
    nic_efficiency: float = Field(gt=0, le=1)
    in_network_reduction: bool = False
    source: str

    @property
    def link_bw_Bps(self) -> float:
        return self.link_gbps * 1e9 / 8


_KINDS = {"gpus": GPU, "systems": System, "fabrics": Fabric}


@dataclass
class Catalog:
    """Every known GPU, system and fabric by name."""
    gpus: dict[str, GPU] = field(default_factory=dict)
    systems: dict[str, System] = field(default_factory=dict)
    fabrics: dict[str, Fabric] = field(default_factory=dict)

    def gpu(self, name: str, where: str = "gpu") -> GPU:
        return _lookup(self.gpus, "GPU", name, where)

    def system(self, name: str, where: str = "system") -> System:
        return _lookup(self.systems, "system", name, where)

    def fabric(self, name: str, where: str = "fabric") -> Fabric:
        return _lookup(self.fabrics, "fabric", name, where)

    def system_gpu(self, system: System) -> GPU:
        return self.gpu(system.gpu, f"systems.{system.name}.gpu")

    def with_overrides(self, data: dict, origin: str) -> "Catalog":
        """A new catalog with a user's entries merged in (see module doc)."""
        new = Catalog(dict(self.gpus), dict(self.systems), dict(self.fabrics))
        for kind, entries in data.items():
            if kind == "models":
                continue
            if kind not in _KINDS:
                raise unknown_name("catalog section", kind, list(_KINDS) + ["models"], origin)
            if not isinstance(entries, dict):
                raise InputError(f"catalog section {kind!r} must map names to entries", origin,
                                 f"write '{kind}:' followed by 'name: {{field: value}}' lines")
            table = getattr(new, kind)
            for name, entry in entries.items():
                table[str(name)] = _build(_KINDS[kind], str(name), entry, table.get(str(name)), f"{origin}: {kind}.{name}")
        new._check_references(origin)
        return new

    def _check_references(self, origin: str) -> None:
        for s in self.systems.values():
            if s.gpu not in self.gpus:
                raise unknown_name("GPU", s.gpu, self.gpus, f"{origin}: systems.{s.name}.gpu")
            if s.fabric not in self.fabrics:
                raise unknown_name("fabric", s.fabric, self.fabrics, f"{origin}: systems.{s.name}.fabric")


def _lookup(table: dict, kind: str, name: str, where: str):
    try:
        return table[name]
    except KeyError:
        raise unknown_name(kind, name, table, where) from None


def _build(cls, name: str, entry, base, where: str):
    if not isinstance(entry, dict):
        raise InputError(f"entry {name!r} must be a mapping of fields", where, "write name: {field: value, ...}")
    values = base.model_dump() if base is not None else {}
    for key, value in entry.items():
        # a mapping field (tflops) is merged key by key, so that overriding
        # one precision keeps the others
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            value = {**values[key], **value}
        values[key] = value
    values["name"] = name
    try:
        return cls(**values)
    except ValidationError as exc:
        raise _pydantic_error(exc, cls, where) from None


def _pydantic_error(exc: ValidationError, cls, where: str) -> InputError:
    """One InputError for the first problem pydantic found."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "[key]")
    place = f"{where}.{loc}" if loc else where
    if err["type"] == "missing":
        return InputError(f"missing field {loc!r}", where, f"add '{loc}:'")
    if err["type"] == "extra_forbidden":
        return unknown_name("field", loc, [f for f in cls.model_fields if f != "name"], where)
    return InputError(err["msg"].removeprefix("Value error, "), place, "fix the value")



@lru_cache(maxsize=1)
def _shipped() -> Catalog:
    cat = Catalog()
    root = resources.files("hardware") / "data"
    for kind, cls in _KINDS.items():
        data = yaml.safe_load((root / f"{kind}.yaml").read_text(encoding="utf-8")) or {}
        table = getattr(cat, kind)
        for name, entry in data.items():
            table[name] = _build(cls, name, entry, None, f"hardware/data/{kind}.yaml: {name}")
    cat._check_references("hardware/data")
    return cat


def load_catalog(user: dict | None = None, origin: str = "catalog") -> Catalog:
    """The shipped catalog, with a user's entries (already-parsed YAML) merged in."""
    cat = _shipped()
    if user:
        cat = cat.with_overrides(user, origin)
    return cat
