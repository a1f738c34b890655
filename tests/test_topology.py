"""The cluster network: DGX SuperPOD switch counts, NVLink domains, leaf
groups and the queries the scheduler and the collectives use, checked
against the reference architectures and against the networkx graph."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hardware.catalog import load_catalog
from hardware.collectives import collective_time, levels_for_group
from hardware.topology import (PoolSpec, build_topology, graph_hops, levels_for_placement, path, pool_levels,
                               span, summary, tier_ratios)
from workloads.errors import InputError

CAT = load_catalog()
H100_4SU = build_topology([PoolSpec("dgx-h100", 128)], CAT)      # 1,024 GPUs
NVL72_SU = build_topology([PoolSpec("gb200-nvl72", 144)], CAT)   # 8 racks, 576 GPUs


def switches(system, nodes, **kw):
    return build_topology([PoolSpec(system, nodes, **kw)], CAT).switches()


# ------------------------------------------------------------ switch counts
def test_h100_4su_superpod_matches_reference_architecture():
    t = H100_4SU
    assert (t.gpus, t.nodes, t.domains) == (1024, 128, 128)
    assert t.switches() == {"leaf": 32, "spine": 16, "core": 0, "interconnect": 0}
    p = t.pools[0]
    assert (p.sus, p.tiers, p.leaf_down, p.leaf_up) == (4, 2, 32, 32)
    # non-blocking: bisection = half the NIC bandwidth (1,024 x 400 Gb/s / 2)
    assert t.bisection_Bps() == pytest.approx(1024 * 50e9 / 2)


@pytest.mark.parametrize("sus, leaf, spine, core", [
    (2, 16, 8, 0), (4, 32, 16, 0), (8, 64, 32, 0), (16, 128, 128, 64), (32, 256, 256, 128), (64, 512, 512, 256)])
def test_b200_superpod_table(sus, leaf, spine, core):
    # DGX SuperPOD B200 reference architecture, "larger SuperPOD component counts"
    assert switches("dgx-b200", 32 * sus) == {"leaf": leaf, "spine": spine, "core": core, "interconnect": 0}


@pytest.mark.parametrize("sus, leaf, spine", [(1, 8, 4), (2, 16, 8), (4, 32, 18), (8, 64, 36), (18, 144, 72)])
def test_b300_xdr_superpod_table(sus, leaf, spine):
    # DGX SuperPOD B300 (XDR, 144-port switches, SU = 72 nodes): spines split each leaf's 72 uplinks evenly
    assert switches("dgx-b300", 72 * sus) == {"leaf": leaf, "spine": spine, "core": 0, "interconnect": 0}


def test_partial_su_gets_the_full_su_of_leaves():
    assert switches("dgx-h100", 33)["leaf"] == 16


def test_leaf_oversubscription_halves_uplinks_spines_and_bisection():
    t = build_topology([PoolSpec("dgx-h100", 128, oversubscription={"leaf": 2})], CAT)
    assert t.pools[0].leaf_up == 16
    assert t.switches()["spine"] == 8
    assert t.bisection_Bps() == pytest.approx(H100_4SU.bisection_Bps() / 2)


def test_three_tier_pool_sees_product_of_ratios_across_pods():
    t = build_topology([PoolSpec("dgx-b200", 512, oversubscription={"leaf": 2, "spine": 1.5})], CAT)
    p = t.pools[0]
    assert p.tiers == 3 and p.pods > 1
    far = span(t, nodes=[0, 511])
    assert far.tier == "core" and far.hops == 5 and far.oversubscription == pytest.approx(3.0)
    near = span(t, nodes=[0, 40])          # another SU of the same pod
    assert near.tier == "spine" and near.hops == 3 and near.oversubscription == pytest.approx(2.0)


def test_single_ratio_applies_to_every_tier():
    assert tier_ratios(2) == {"leaf": 2.0, "spine": 2.0, "core": 2.0}
    assert tier_ratios({"spine": 3}) == {"leaf": 1.0, "spine": 3.0, "core": 1.0}


# --------------------------------------------------------------- NVL72 racks
def test_gb200_nvl72_su_is_one_leaf_group_of_eight_racks():
    t = NVL72_SU
    assert (t.gpus, t.nodes, t.domains) == (576, 144, 8)
    p = t.pools[0]
    assert p.rails == 72 and p.rails_per_leaf == 4
    assert t.switches()["leaf"] == 18          # 576 GPU ports / 32 host ports per leaf
    assert np.unique(t.node_group).size == 1
    assert list(np.unique(t.node_domain[:18])) == [0]          # 18 trays share a rack's NVLink domain


def test_nvl72_placement_inside_a_rack_is_one_nvlink_level():
    levels = levels_for_placement(NVL72_SU, nodes=range(18))
    assert [lv.name for lv in levels] == ["nvlink"] and levels[0].size == 72
    two = levels_for_placement(NVL72_SU, nodes=range(36))
    assert [(lv.name, lv.size) for lv in two] == [("nvlink", 72), ("network", 2)]
    # the network member is a whole rack: 72 rails of 400 Gb/s at NIC efficiency
    assert two[1].bw_Bps == pytest.approx(72 * 50e9 * CAT.fabric("ndr").nic_efficiency)


def test_nvl72_paths():
    assert path(NVL72_SU, 0, 71) == path(NVL72_SU, 1, 70)
    assert path(NVL72_SU, 0, 71).tier == "nvlink"
    assert path(NVL72_SU, 0, 71).bw_Bps == pytest.approx(900e9)   # 1.8 TB/s bidirectional per GPU
    assert path(NVL72_SU, 0, 72 * 7 + 5).tier == "leaf"


def test_nvl72_nodes_must_fill_racks():
    with pytest.raises(InputError, match="multiple of 18"):
        build_topology([PoolSpec("gb200-nvl72", 20)], CAT)


# ------------------------------------------------------------ pair queries
def test_paths_in_h100_superpod():
    t = H100_4SU
    assert path(t, 0, 7).tier == "nvlink" and path(t, 0, 7).bw_Bps == pytest.approx(450e9)
    same_su = path(t, 0, 8 * 31 + 3)          # other rail, same SU: NVLink to the rail, then one leaf
    assert (same_su.tier, same_su.hops, same_su.bw_Bps) == ("leaf", 1, 50e9)
    other_su = path(t, 0, 8 * 32)
    assert (other_su.tier, other_su.hops) == ("spine", 3)
    assert other_su.latency_s == pytest.approx(3 * CAT.fabric("ndr").hop_latency_s)
    with pytest.raises(InputError):
        path(t, 3, 3)
    with pytest.raises(InputError, match="outside"):
        path(t, 0, 1024)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1023), st.integers(0, 1023))
def test_structural_hops_agree_with_the_graph(a, b):
    if a == b:
        return
    assert path(H100_4SU, a, b).hops == graph_hops(H100_4SU.graph(), a, b)


def test_graph_shape_and_capacities():
    g = H100_4SU.graph()
    kinds = nx.get_node_attributes(g, "kind")
    count = {k: sum(1 for v in kinds.values() if v == k) for k in set(kinds.values())}
    assert count == {"gpu": 1024, "nic": 1024, "nvswitch": 128, "leaf": 32, "spine": 16}
    # every leaf has 32 hosts and 32 uplinks' worth of capacity to the spines
    leaf = ("leaf", 5)
    hosts = [v for v in g[leaf] if v[0] == "nic"]
    up = sum(d["capacity_Bps"] for v, d in g[leaf].items() if v[0] == "spine")
    assert len(hosts) == 32 and up == pytest.approx(32 * 50e9)
    assert nx.is_connected(g)


def test_graph_of_gb200_and_three_tier_pool():
    g = NVL72_SU.graph()
    assert graph_hops(g, 0, 72) == path(NVL72_SU, 0, 72).hops == 1
    t = build_topology([PoolSpec("dgx-b200", 512)], CAT)
    g3 = t.graph()
    assert sum(1 for _, k in g3.nodes(data="kind") if k == "core") == 64
    for a, b in [(0, 8), (0, 8 * 40), (0, 8 * 511 + 7)]:
        assert graph_hops(g3, a, b) == path(t, a, b).hops
    # non-blocking: each spine's core uplinks equal its leaf downlinks
    spine = ("spine", 0)
    down = sum(d["links"] for v, d in g3[spine].items() if v[0] == "leaf")
    up = sum(d["links"] for v, d in g3[spine].items() if v[0] == "core")
    assert down == pytest.approx(up) == pytest.approx(32)


# ------------------------------------------------------- placement queries
def test_node_index_arrays_for_the_scheduler():
    t = H100_4SU
    assert t.node_su.tolist() == [i // 32 for i in range(128)]
    assert t.node_group.tolist() == t.node_su.tolist()     # an H100 SU is one leaf group
    assert t.node_domain.tolist() == list(range(128))
    assert list(t.node_gpus(3)) == list(range(24, 32))
    assert t.gpu_node([0, 7, 8, 1023]).tolist() == [0, 0, 1, 127]


B200_600 = build_topology([PoolSpec("dgx-b200", 600)], CAT)
NVL72_6SU = build_topology([PoolSpec("gb200-nvl72", 144 * 6)], CAT)
TIER_NUMBER = {"nvlink": 0, "leaf": 1, "spine": 2, "core": 3}


def test_pool_levels_are_nested_groups_for_the_scheduler():
    assert pool_levels(H100_4SU) == [("leaf_group", 32, 1), ("pool", 128, 2)]
    assert pool_levels(B200_600) == [("leaf_group", 32, 1), ("pod", 128, 2), ("pool", 600, 3)]
    assert pool_levels(NVL72_6SU)[0] == ("nvlink_domain", 18, 0)
    small = build_topology([PoolSpec("dgx-h100", 4)], CAT)
    assert pool_levels(small) == [("pool", 4, 1)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_pool_levels_agree_with_span(data):
    topo = data.draw(st.sampled_from([H100_4SU, B200_600, NVL72_6SU]))
    a = data.draw(st.integers(0, topo.nodes - 1))
    b = data.draw(st.integers(0, topo.nodes - 1).filter(lambda x: x != a))
    s = span(topo, nodes=[a, b])
    levels = pool_levels(topo)
    tier = next(t for _, size, t in levels if a // size == b // size)
    assert tier == TIER_NUMBER[s.tier]


def test_span_counts():
    s = span(H100_4SU, nodes=[0, 1, 40, 41])
    assert (s.gpus, s.nodes, s.domains, s.leaf_groups, s.sus, s.tier, s.hops) == (32, 4, 4, 2, 2, "spine", 3)
    one = span(H100_4SU, gpus=[5])
    assert (one.tier, one.hops) == ("gpu", 0)
    assert levels_for_placement(H100_4SU, gpus=[5]) == []
    with pytest.raises(InputError):
        span(H100_4SU, nodes=[0], gpus=[0])
    with pytest.raises(InputError):
        span(H100_4SU, nodes=[])


def test_placement_levels_match_analytical_group_levels():
    """A dense 64-GPU placement inside one SU sees the same levels as the
    analytical model's 64-GPU group."""
    system, gpu = CAT.system("dgx-h100"), CAT.gpu("h100")
    placed = levels_for_placement(H100_4SU, nodes=range(8))
    analytic = levels_for_group(system, CAT.fabric("ndr"), gpu, 64)
    assert placed == analytic
    nbytes = 1e9
    assert collective_time("all_reduce", nbytes, placed) == collective_time("all_reduce", nbytes, analytic)


def test_uneven_placement_is_limited_by_its_thinnest_domain():
    gpus = list(range(8)) + [8]          # a full node plus one GPU of the next
    levels = levels_for_placement(H100_4SU, gpus=gpus)
    assert levels[-1].bw_Bps == pytest.approx(1 * 50e9 * CAT.fabric("ndr").nic_efficiency)


def test_oversubscribed_placement_is_slower_across_sus_only():
    t = build_topology([PoolSpec("dgx-h100", 128, oversubscription={"leaf": 2})], CAT)
    inside = levels_for_placement(t, nodes=range(32))
    across = levels_for_placement(t, nodes=range(0, 128, 4))
    assert inside[-1].bw_Bps == pytest.approx(2 * across[-1].bw_Bps)
    assert collective_time("all_to_all", 1e9, across) > collective_time("all_to_all", 1e9, inside)


# ----------------------------------------------------- heterogeneous pools
def test_heterogeneous_pools():
    t = build_topology([PoolSpec("dgx-h100", 64, name="h"), PoolSpec("gb200-nvl72", 36, name="gb"),
                        PoolSpec("dgx-a100", 20, fabric="hdr", name="a")], CAT)
    assert t.gpus == 512 + 144 + 160
    assert t.node_pool.tolist() == [0] * 64 + [1] * 36 + [2] * 20
    assert t.pools[1].first_gpu == 512 and t.gpu_node([512]).tolist() == [64]
    cross = path(t, 0, 512)
    assert cross.tier == "interconnect" and cross.hops == 2 + 2 + 1
    assert cross.hops == graph_hops(t.graph(), 0, 512)
    assert path(t, 0, 512 + 144).bw_Bps == pytest.approx(25e9)     # the HDR end limits
    s = span(t, nodes=[0, 64])
    assert (s.pools, s.tier) == (2, "interconnect")
    assert t.switches()["interconnect"] >= 1
    info = summary(t)
    assert [p["name"] for p in info["pools"]] == ["h", "gb", "a"]
    assert info["gpus"] == t.gpus


def test_bad_pools_are_input_errors():
    with pytest.raises(InputError, match="unknown system"):
        build_topology([PoolSpec("dgx-h1000", 4)], CAT)
    with pytest.raises(InputError, match="unknown fabric"):
        build_topology([PoolSpec("dgx-h100", 4, fabric="ndrr")], CAT)
    with pytest.raises(InputError, match=">= 1"):
        build_topology([PoolSpec("dgx-h100", 4, oversubscription={"leaf": 0.5})], CAT)
    with pytest.raises(InputError, match="tier"):
        build_topology([PoolSpec("dgx-h100", 4, oversubscription={"laef": 2})], CAT)
    with pytest.raises(InputError):
        build_topology([PoolSpec("dgx-h100", 0)], CAT)
    with pytest.raises(InputError, match="unique"):
        build_topology([PoolSpec("dgx-h100", 4), PoolSpec("dgx-h100", 4)], CAT)
    with pytest.raises(InputError):
        build_topology([], CAT)


# -------------------------------------------------------------------- scale
def test_100k_gpu_cluster_index_builds_without_the_graph():
    # build speed is measured by benchmarks/bench_models.py
    t = build_topology([PoolSpec("dgx-h100", 12_500)], CAT)
    s = span(t, nodes=np.arange(0, 12_500, 7))
    assert t.gpus == 100_000
    assert t.pools[0].tiers == 3 and s.tier == "core"
    assert t._graph is None      # the networkx graph is only built on request
