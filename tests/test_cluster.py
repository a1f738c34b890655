"""Property-based: the cluster state's indexes (sim/cluster.py) against a
plain model of who holds which GPUs, over random allocate/release/failure
sequences on pools with nested topology levels."""
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cluster import DOWN, Level, PoolState

GPN = 8
LEVELS = [Level("leaf_group", 4, 1), Level("pod", 12, 2)]

op_st = st.one_of(
    st.tuples(st.just("alloc"), st.sampled_from([1, 2, 3, 5, 8, 16, 24, 40, 64, 96, 160, 240])),
    st.tuples(st.just("release"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("down"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("repair"), st.integers(0, 10 ** 6)),
)


@settings(max_examples=120, deadline=None)
@given(ops=st.lists(op_st, min_size=1, max_size=80), nodes=st.integers(5, 40), spares=st.integers(0, 2),
       topology=st.booleans())
def test_indexes_match_a_model_of_the_holders(ops, nodes, spares, topology):
    st_ = PoolState(0, "p", GPN, nodes, spares, LEVELS)
    held: dict[int, tuple] = {}          # allocation id -> (nodes, GPUs per node)
    used = [0] * (nodes + spares)        # GPUs held on each node
    down: list[int] = []
    k = 0
    for op, arg in ops:
        if op == "alloc":
            fits = st_.fits(arg)
            assert fits == (arg <= st_.max_fit())
            got = st_.allocate(arg, topology)
            assert (got is not None) == fits, (arg, st_.max_fit())
            if got is None:
                continue
            ns, per, tiers = got
            assert list(ns) == sorted(set(ns))
            assert len(ns) == (1 if arg <= GPN else -(-arg // GPN))
            assert per == (arg if arg < GPN else GPN)
            assert tiers == st_.tiers(ns)
            for n in ns:
                assert st_.status[n] != DOWN
                used[n] += per
                assert used[n] <= GPN, "a GPU allocated twice"
            held[k] = (ns, per)
            k += 1
        elif op == "release" and held:
            key = sorted(held)[arg % len(held)]
            ns, per = held.pop(key)
            st_.release(ns, per)
            for n in ns:
                used[n] -= per
        elif op == "down":
            # only an idle node goes down (the engine releases its jobs first)
            idle = [n for n in range(nodes + spares) if used[n] == 0 and st_.status[n] != DOWN]
            if idle:
                n = idle[arg % len(idle)]
                st_.node_down(n)
                down.append(n)
        elif op == "repair" and down:
            n = down.pop(arg % len(down))
            st_.node_repaired(n, as_spare=bool(arg % 2))
        st_.check()
        up = [n for n in range(nodes + spares) if st_.status[n] == 0]
        assert st_.free_gpus == sum(GPN - used[n] for n in up)
        assert all(st_.free[n] == GPN - used[n] for n in up)
        if topology:
            assert set(st_.gangs) == {ns[0] for ns, per in held.values() if per == GPN and len(ns) > 1
                                      and st_.g0[ns[0]] != st_.g0[ns[-1]]}
    for ns, per in held.values():
        st_.release(ns, per)
    st_.check()
    assert not st_.gangs
    assert st_.free_gpus == st_.up_nodes * GPN
