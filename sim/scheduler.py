"""Scheduling policies: the order in which waiting jobs get the cluster.

Every policy keeps the waiting jobs in a queue and starts them from the head
while the head fits (gang: all its GPUs or nothing). When the head does not
fit, the strict policies wait; with backfill (policy ``backfill``, or
``scheduler.backfill: true`` with any order) later jobs may jump ahead if
they do not delay the head's reservation (EASY backfill). With
``preemption: true`` a head job evicts strictly lower-priority running jobs
when that makes it fit.

Policy       order                               cost per queue operation
-----------  ----------------------------------  ----------------------------------
fifo         submit order                        O(1) amortized insert/remove/head
priority     priority (high first), then submit  O(log n) insert/remove, O(1) head
backfill     submit order + EASY backfill        as fifo, plus a reservation walk
                                                 over running jobs by expected end
                                                 when the blocked head changes (a copy
                                                 of the event heap, O(r) memcpy, popped
                                                 O(m log r) for the m jobs walked) and
                                                 a scan of at most ``backfill_window``
                                                 waiting jobs per pass (O(1) to reject
                                                 one, O(nodes) to place one; the window,
                                                 less the jobs already turned down, kept
                                                 in step with the queue by WindowCache),
                                                 skipped when it could not start anything
fair-share   tenant with the lowest allocated    O(log n) insert/remove, O(T) head
             GPUs / weight first (under its      (T tenants)
             quota_gpus cap), submit order
             within a tenant
sjf          shortest expected duration first    O(log n) insert/remove, O(1) head
             (at the tightest placement)

n = waiting jobs. Passes run after every instant with events that can
change what fits (submits, finishes, failures, repairs, autoscaling; events
at the same time share one pass); a submit while the head is blocked only
checks the new job. Preemption considers running jobs of lower
priority, lowest first and most recently started first, at most
sim.engine.PREEMPT_SCAN_LIMIT per decision: O(victims x their nodes).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Callable, Iterable, Iterator, Optional

from sortedcontainers import SortedList

POLICIES = ("fifo", "priority", "backfill", "fair-share", "sjf")
DEFAULT_BACKFILL_WINDOW = 100
"""Waiting jobs after the head that one backfill pass considers (Slurm's
bf_max_job_test plays the same role). Bounds the work per event."""


class Queue:
    """What the engine asks of a waiting queue (FifoQueue, OrderedQueue,
    FairShareQueue): runs in, runs out, the head and the runs after it."""

    def push(self, run) -> None:
        raise NotImplementedError

    def remove(self, run) -> None:
        raise NotImplementedError

    def head(self) -> Optional[int]:
        """The seq of the run to start next (None: the queue is empty)."""
        raise NotImplementedError

    def is_last(self, run) -> bool:
        """Is run the last in the order (its removal moves no other run)?
        (False when unsure.)"""
        return False

    def candidates(self, window: int) -> Iterable[int]:
        """The seqs of up to `window` runs after the head, in order."""
        raise NotImplementedError

    def fitting(self, window: int, sizes: list[int], limit: int, skip: set[int]) -> list[int]:
        """candidates(window) with sizes[seq] <= limit and seq not in skip."""
        return [x for x in self.candidates(window) if sizes[x] <= limit and x not in skip]

    def __len__(self) -> int:
        raise NotImplementedError


class FifoQueue(Queue):
    """Waiting runs in submit order (run.seq), for fifo and backfill.

    A sorted list with lazy removal: runs arrive in seq order, so a push
    is an append (an out-of-order push, a run resubmitted after an
    interruption, is a bisect insert or revives its old entry); a removal
    only marks the run gone; dead entries are skipped, and dropped in bulk
    once they outnumber the live ones. O(1) amortized push, remove and
    head (no Python-level tree as in a SortedList); candidates cost
    O(window + dead entries passed).

    ``gen`` changes with every removal and every out-of-order push (what a
    WindowCache cannot follow by itself); in-order pushes only append."""

    COMPACT_AT = 64
    """Dead entries always tolerated before a bulk drop."""

    def __init__(self) -> None:
        self.items: list[int] = []     # seqs, sorted; live ones are in `live`
        self.live: set[int] = set()
        self.lo = 0                    # items[:lo] are dead
        self.dead = 0
        self.gen = 0

    def push(self, run) -> None:
        s = run.qkey = run.seq
        items = self.items
        if not items or s > items[-1]:
            items.append(s)
        else:
            self.gen += 1
            i = bisect_left(items, s)
            if i < len(items) and items[i] == s:
                self.dead -= 1         # its old entry comes back to life
            else:
                items.insert(i, s)
            if i < self.lo:
                self.lo = i
        self.live.add(s)

    def remove(self, run) -> None:
        self.live.remove(run.qkey)
        self.gen += 1
        self.dead += 1
        if self.dead > self.COMPACT_AT and self.dead > len(self.live):
            live = self.live
            self.items = [x for x in self.items if x in live]
            self.lo = 0
            self.dead = 0

    def head(self) -> Optional[int]:
        """The first live seq (dead entries before it are passed for good)."""
        items, live = self.items, self.live
        lo, n = self.lo, len(items)
        while lo < n and items[lo] not in live:
            lo += 1
        self.lo = lo
        return items[lo] if lo < n else None

    def is_last(self, run) -> bool:
        return bool(self.items) and self.items[-1] == run.qkey

    def candidates(self, window: int) -> list[int]:
        self.head()                    # moves lo to the head
        items, live = self.items, self.live
        j, n = self.lo + 1, len(items)
        out: list[int] = []
        while len(out) < window and j < n:
            chunk = items[j:j + window - len(out) + 8]
            j += len(chunk)
            out += [x for x in chunk if x in live]
        return out[:window]

    def __len__(self) -> int:
        return len(self.live)


class WindowCache:
    """The backfill window of a FifoQueue (the first `window` waiting runs
    after the head) minus the runs turned down under the current
    reservation, kept in step with the queue instead of rebuilt for every
    backfill pass: runs appended to the queue join while the window has
    room, a run leaving the window is dropped from it (and, the window
    being full, the first waiting run beyond it moves in), and anything
    else (the reservation or the head changes, an out-of-order push)
    rebuilds it from candidates(). A pass then looks at tens of runs
    instead of walking the queue."""

    def __init__(self) -> None:
        self.key: Optional[tuple] = None   # (reservation key, queue gen) the list is valid for
        self.scan: list[int] = []
        self.count = 0           # runs in the window, turned down ones included
        self.last = -1           # highest seq considered
        self.wend = -1           # seq of the window's last run (once full: runs after it are beyond)
        self.head: Optional[int] = None
        self.nrej = 0

    def get(self, q: FifoQueue, key, window: int, rejected) -> list[int]:
        k = (key, q.gen)
        items = q.items
        if self.key != k:
            win = q.candidates(window)
            self.count = len(win)
            self.wend = win[-1] if win else -1
            self.scan = [x for x in win if x not in rejected]
            self.last = items[-1] if items else -1
            self.head = q.head()
            self.key = k
            self.nrej = len(rejected)
            return self.scan
        if items and items[-1] > self.last:
            if self.count < window:
                live = q.live
                more = [x for x in items[bisect_right(items, self.last):] if x in live][:window - self.count]
                if more:
                    self.count += len(more)
                    self.wend = more[-1]
                    self.scan += [x for x in more if x not in rejected]
            self.last = items[-1]
        if len(rejected) != self.nrej:
            self.scan = [x for x in self.scan if x not in rejected]
            self.nrej = len(rejected)
        return self.scan

    def removed(self, q: FifoQueue, seq: int, window: int, rejected) -> None:
        """Run `seq` just left queue q (q.remove done)."""
        k = self.key
        if k is None:
            return
        if k[1] != q.gen - 1 or seq == self.head:
            self.key = None
            return
        if seq <= self.wend:
            scan = self.scan
            if seq in scan:
                scan.remove(seq)
            if self.count >= window:
                # the first waiting run beyond the window moves in
                items, live = q.items, q.live
                i, n = bisect_right(items, self.wend), len(items)
                while i < n and items[i] not in live:
                    i += 1
                if i < n:
                    x = self.wend = items[i]
                    if x not in rejected:
                        scan.append(x)
                else:
                    self.count -= 1
            else:
                self.count -= 1
        self.key = (k[0], q.gen)


class OrderedQueue(Queue):
    """Waiting runs in one total order: key(run) then run.seq."""

    def __init__(self, key: Optional[Callable] = None):
        self.key = key
        self.items = SortedList()

    def push(self, run) -> None:
        if self.key is None:
            run.qkey = run.seq
        else:
            run.qkey = (self.key(run), run.seq)
        self.items.add(run.qkey)

    def remove(self, run) -> None:
        self.items.remove(run.qkey)

    def head(self) -> Optional[int]:
        if not self.items:
            return None
        k = self.items[0]
        return k if self.key is None else k[1]

    def is_last(self, run) -> bool:
        return bool(self.items) and self.items[-1] == run.qkey

    def candidates(self, window: int) -> Iterator[int]:
        if self.key is None:
            return self.items.islice(1, window + 1)
        return (k[1] for k in self.items.islice(1, window + 1))

    def __len__(self) -> int:
        return len(self.items)


class FairShareQueue(Queue):
    """Per-tenant FIFO queues; the head is the first job of the tenant with
    the lowest allocated GPUs per unit of weight among tenants whose head
    job fits under their quota."""

    def __init__(self, tenants: dict, allocated: dict):
        self.weights = {name: spec.weight for name, spec in tenants.items()}
        self.quotas = {name: spec.quota_gpus for name, spec in tenants.items()}
        self.allocated = allocated          # tenant -> GPUs allocated now (kept by the engine)
        self.queues: dict[str, SortedList] = {}
        self.gpus: dict[int, int] = {}
        self.n = 0

    def push(self, run) -> None:
        q = self.queues.get(run.tenant)
        if q is None:
            q = self.queues[run.tenant] = SortedList()
        run.qkey = run.seq
        q.add(run.seq)
        self.gpus[run.seq] = run.gpus
        self.n += 1

    def remove(self, run) -> None:
        q = self.queues[run.tenant]
        q.remove(run.seq)
        del self.gpus[run.seq]
        self.n -= 1
        if not q:
            del self.queues[run.tenant]

    def _order(self) -> list[tuple]:
        out = []
        for tenant, q in self.queues.items():
            seq = q[0]
            quota = self.quotas.get(tenant)
            used = self.allocated.get(tenant, 0)
            if quota is not None and used + self.gpus[seq] > quota:
                continue
            out.append((used / self.weights.get(tenant, 1.0), seq, tenant))
        out.sort()
        return out

    def head(self) -> Optional[int]:
        order = self._order()
        return order[0][1] if order else None

    def candidates(self, window: int) -> Iterator[int]:
        """Round-robin over eligible tenants in share order, after the head."""
        order = self._order()
        if not order:
            return iter(())
        iters = [iter(self.queues[t]) for _, _, t in order]
        next(iters[0])  # skip the head
        out: list[int] = []
        while iters and len(out) < window:
            alive = []
            for it in iters:
                seq = next(it, None)
                if seq is not None:
                    out.append(seq)
                    alive.append(it)
                    if len(out) >= window:
                        break
            iters = alive
        return iter(out)

    def __len__(self) -> int:
        return self.n


def make_queue(spec, allocated_by_tenant: dict) -> Queue:
    """The queue for a SchedulerSpec."""
    policy = spec.policy
    if policy in ("fifo", "backfill"):
        return FifoQueue()
    if policy == "priority":
        return OrderedQueue(key=lambda run: -run.priority)
    if policy == "sjf":
        return OrderedQueue(key=lambda run: run.est_s)
    if policy == "fair-share":
        return FairShareQueue(spec.tenants, allocated_by_tenant)
    raise ValueError(policy)  # the scenario schema admits only POLICIES
