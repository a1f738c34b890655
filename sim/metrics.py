"""What a run measures while it runs: GPU-hours demanded and served per
(family, kind) integrated exactly between events, and snapshots of the
cluster at a fixed interval. Summaries and tables are built from these
after the run (sim/outputs.py).
"""
from __future__ import annotations


class Demand:
    """GPUs demanded (jobs present, queued or running; replicas the
    autoscaler asks for) and served (allocated and working) per key, with
    their time integrals per sampling interval.

    Kept as waiting (demanded, not served) and served GPUs, so that a job
    that starts the moment it arrives changes only the served side. O(1)
    per change, with no per-key clock: a change of d GPUs at time t adds
    d x (end - t) to the current interval's integral, ``end`` being that
    interval's end; closing an interval starts the next one's integral at
    level x width. The engine updates the lists in place on its hot path
    (wait/srv and wait_acc/srv_acc at index key)."""
    __slots__ = ("keys", "names", "wait", "srv", "wait_acc", "srv_acc", "end", "width", "rows")

    def __init__(self, interval_s: float = 3600.0):
        self.keys: dict = {}
        self.names: list = []
        self.wait: list = []           # GPUs demanded but not served, now
        self.srv: list = []            # GPUs served now
        self.wait_acc: list = []       # GPU-seconds of the current interval, as if nothing changed until its end
        self.srv_acc: list = []
        self.width = float(interval_s)
        self.end = self.width          # end of the current interval
        self.rows: list = []           # (interval start, family, kind, demanded GPU-s, served GPU-s)

    def key(self, family: str, kind: str) -> int:
        k = self.keys.get((family, kind))
        if k is None:
            k = self.keys[(family, kind)] = len(self.names)
            self.names.append((family, kind))
            for lst in (self.wait, self.srv, self.wait_acc, self.srv_acc):
                lst.append(0)
        return k

    def change(self, k: int, now: float, d_dem: float, d_srv: float) -> None:
        """Demanded GPUs change by d_dem, served ones by d_srv."""
        w = self.end - now
        d_wait = d_dem - d_srv
        self.wait[k] += d_wait
        self.srv[k] += d_srv
        self.wait_acc[k] += d_wait * w
        self.srv_acc[k] += d_srv * w

    def set(self, k: int, now: float, dem: float, srv: float) -> None:
        self.change(k, now, dem - self.wait[k] - self.srv[k], srv - self.srv[k])

    def flush(self, start: float, end: float) -> None:
        """Close the interval [start, end) (end at most the interval's end:
        the last one may be cut short): one row per key."""
        cut = self.end - end
        w = self.width
        for k, (family, kind) in enumerate(self.names):
            wait = self.wait_acc[k] - self.wait[k] * cut
            srv = self.srv_acc[k] - self.srv[k] * cut
            self.rows.append((start, family, kind, (wait + srv) / 3600.0, srv / 3600.0))
            self.wait_acc[k] = self.wait[k] * w
            self.srv_acc[k] = self.srv[k] * w
        self.end = end + w
