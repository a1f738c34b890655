"""Scenario files are strict: unknown keys, bad values and impossible jobs
are one clear InputError naming the field; good files parse with units."""
import copy

import pytest
import yaml

from sim.scenario import load_scenario, set_dotted
from workloads.errors import InputError

BASE = {
    "name": "t",
    "seed": 3,
    "duration": "30d",
    "cluster": {"system": "dgx-h100", "nodes": 16, "fabric": {"link": "ndr", "oversubscription": 2}},
    "scheduler": {"policy": "backfill"},
    "failures": {"gpu_mtbf_h": 50000, "checkpoint_interval": "3h", "checkpoint_cost": "2m", "restart_delay": "10m"},
    "workloads": [
        {"family": "pretraining", "model": "llama3-8b", "tokens": "1T", "gpus": 64},
        {"family": "inference", "model": "llama3-70b", "requests_per_s": 5, "tp": 4,
         "output_tokens": {"mean": 2000, "distribution": "lognormal"}, "slo": {"ttft": "2s", "tpot": "100ms"}},
        {"family": "post_training", "kind": "lora", "base_model": "llama3-8b", "count": 100, "gpus": 8, "tokens": "100M"},
    ],
}


def load(mod=None):
    data = copy.deepcopy(BASE)
    if mod:
        mod(data)
    return load_scenario(data)


def test_units_are_parsed():
    s = load()
    assert s.duration == 30 * 86400
    assert s.failures.checkpoint_interval == 3 * 3600
    assert s.failures.checkpoint_cost == 120
    assert s.workloads[0].tokens == 1e12
    assert s.workloads[1].slo.tpot == pytest.approx(0.1)
    assert s.workloads[2].tokens == 1e8
    assert s.cluster.pools[0].fabric.tier_ratios() == {"leaf": 2.0, "spine": 2.0, "core": 2.0}


def test_defaults():
    s = load_scenario({"cluster": {"system": "dgx-a100", "nodes": 2}})
    assert s.seed == 0 and s.duration == 30 * 86400
    assert s.scheduler.policy == "fifo" and s.scheduler.preemption is False
    assert s.failures is None and s.workloads == []
    assert s.power.pue == 1.3
    assert s.outputs.sample_interval == 3600


def test_pools_for_a_mixed_cluster():
    s = load_scenario({"cluster": {"pools": [{"system": "dgx-h100", "nodes": 4}, {"system": "dgx-b200", "nodes": 2}]}})
    assert [p.name for p in s.cluster.pools] == ["dgx-h100", "dgx-b200"]


@pytest.mark.parametrize("mod,key,suggestion", [
    (lambda d: d.update(duraton="2d"), "duraton", "duration"),
    (lambda d: d["cluster"].update(nodse=3), "nodse", "nodes"),
    (lambda d: d["workloads"][0].update(modle="x"), "modle", "model"),
    (lambda d: d["workloads"][1]["output_tokens"].update(meen=3), "meen", "mean"),
    (lambda d: d["failures"].update(gpu_mtbf=3), "gpu_mtbf", "gpu_mtbf_h"),
    (lambda d: d["scheduler"].update(polcy="fifo"), "polcy", "policy"),
])
def test_unknown_key_names_it_and_suggests(mod, key, suggestion):
    with pytest.raises(InputError) as exc:
        load(mod)
    assert repr(key) in exc.value.line()
    assert repr(suggestion) in exc.value.line()


@pytest.mark.parametrize("mod,needle", [
    (lambda d: d["workloads"][0].update(family="pretrain"), "pretraining"),
    (lambda d: d["workloads"][0].update(gpus=100000), "workloads[0].gpus"),
    (lambda d: d["workloads"][0].update(gpus=0), "workloads[0].gpus"),
    (lambda d: d["workloads"][0].update(gpus=-4), "workloads[0].gpus"),
    (lambda d: d["workloads"][0].update(model="llama9"), "llama3-8b"),
    (lambda d: d["cluster"].update(system="dgx-h10"), "dgx-h100"),
    (lambda d: d["cluster"]["fabric"].update(link="ndrr"), "ndr"),
    (lambda d: d["scheduler"].update(policy="fifoo"), "fifo"),
    (lambda d: d.update(duration="abc"), "duration"),
    (lambda d: d.update(duration=0), "duration"),
    (lambda d: d["cluster"].update(nodes=-1), "cluster.nodes"),
    (lambda d: d["cluster"].update(nodes=0), "cluster.nodes"),
    (lambda d: d["workloads"][1]["slo"].update(ttft="2x"), "slo.ttft"),
    (lambda d: d["workloads"][0].update(tokens="lots"), "tokens"),
    (lambda d: d["cluster"]["fabric"].update(oversubscription=0.5), "oversubscription"),
    (lambda d: d["workloads"][2].pop("kind"), "kind"),
    (lambda d: d["workloads"][1].pop("requests_per_s"), "requests_per_s"),
])
def test_bad_values_are_one_clear_error(mod, needle):
    with pytest.raises(InputError) as exc:
        load(mod)
    line = exc.value.line()
    assert needle in line
    assert "\n" not in line


def test_job_bigger_than_cluster_is_rejected_before_running():
    with pytest.raises(InputError, match="asks for 256 GPUs but the largest pool it may use has 128"):
        load(lambda d: d["workloads"][0].update(gpus=256))


def test_overrides_use_dotted_paths():
    s = load_scenario(copy.deepcopy(BASE), overrides={"cluster.nodes": 32, "workloads.0.gpus": 256,
                                                       "scheduler.policy": "sjf"})
    assert s.cluster.pools[0].nodes == 32 and s.workloads[0].gpus == 256 and s.scheduler.policy == "sjf"
    with pytest.raises(InputError):
        load_scenario(copy.deepcopy(BASE), overrides={"workloads.9.gpus": 1})


def test_set_dotted_creates_mappings():
    d = {}
    set_dotted(d, "a.b.c", 1)
    assert d == {"a": {"b": {"c": 1}}}


def test_yaml_files(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert load_scenario(str(p)).name == "t"


@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"),
    (b"# only a comment\n", "holds no data"),
    (b"\x00\x01\x02binary", "binary"),
    (b"name: caf\xe9\n", "not UTF-8"),
    (b"name: [unclosed\ncluster: {}\n", "line"),
    (b"- a list\n- not a mapping\n", "mapping"),
])
def test_bad_files(tmp_path, content, needle):
    p = tmp_path / "s.yaml"
    p.write_bytes(content)
    with pytest.raises(InputError, match=needle):
        load_scenario(str(p))


def test_missing_file():
    with pytest.raises(InputError, match="does not exist"):
        load_scenario("/nonexistent/scenario.yaml")


def test_user_catalog_in_scenario(tmp_path):
    data = copy.deepcopy(BASE)
    data["catalog"] = {"systems": {"my-h100": {"gpu": "h100", "gpus_per_node": 8, "nvlink_domain_gpus": 8,
                                                "nics_per_node": 8, "nic_gbps": 400, "fabric": "ndr", "su_nodes": 32,
                                                "node_max_w": 10200, "node_overhead_w": 2000, "source": "mine"}}}
    data["cluster"]["system"] = "my-h100"
    assert load_scenario(data).cluster.pools[0].system == "my-h100"
    data["catalog"]["systems"]["my-h100"]["gpu"] = "h1000"
    with pytest.raises(InputError, match="h100"):
        load_scenario(data)


def test_a_scenario_object_round_trips_with_overrides():
    s = load()
    again = load_scenario(s, overrides={"cluster.nodes": 8})
    assert again.cluster.pools[0].nodes == 8 and again.workloads == s.workloads
    mixed = load_scenario({"cluster": {"pools": [{"system": "dgx-h100", "nodes": 4}, {"system": "dgx-b200", "nodes": 2}]}})
    assert load_scenario(mixed, overrides={"cluster.pools.1.nodes": 3}).cluster.pools[1].nodes == 3
