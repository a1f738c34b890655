"""What a run measures while it runs: GPU-hours demanded and served per
(family, kind) integrated exactly between events, and snapshots of the
cluster at a fixed interval. Summaries and tables are built from these
after the run (sim/outputs.py).
"""
from __future__ import annotations


class Demand:
    """GPUs demanded (jobs present, queued or running; replicas the
    autoscaler asks for) and served (allocated and working) per key, with
    their time integrals per sampling interval. O(1) per change."""
    __slots__ = ("keys", "names", "dem", "srv", "dem_area", "srv_area", "last", "rows")

    def __init__(self):
        self.keys: dict = {}
        self.names: list = []
        self.dem: list = []
        self.srv: list = []
        self.dem_area: list = []
        self.srv_area: list = []
        self.last: list = []
        self.rows: list = []           # (interval start, family, kind, demanded GPU-s, served GPU-s)

    def key(self, family: str, kind: str) -> int:
        k = self.keys.get((family, kind))
        if k is None:
            k = self.keys[(family, kind)] = len(self.names)
            self.names.append((family, kind))
            for lst in (self.dem, self.srv, self.dem_area, self.srv_area):
                lst.append(0)
            self.last.append(0.0)
        return k

    def change(self, k: int, now: float, d_dem: float, d_srv: float) -> None:
        dt = now - self.last[k]
        if dt:
            self.dem_area[k] += self.dem[k] * dt
            self.srv_area[k] += self.srv[k] * dt
            self.last[k] = now
        self.dem[k] += d_dem
        self.srv[k] += d_srv

    def set(self, k: int, now: float, dem: float, srv: float) -> None:
        self.change(k, now, dem - self.dem[k], srv - self.srv[k])

    def flush(self, start: float, end: float) -> None:
        """Close the interval [start, end): one row per key."""
        for k, (family, kind) in enumerate(self.names):
            dt = end - self.last[k]
            dem = self.dem_area[k] + self.dem[k] * dt
            srv = self.srv_area[k] + self.srv[k] * dt
            self.rows.append((start, family, kind, dem / 3600.0, srv / 3600.0))
            self.dem_area[k] = 0.0
            self.srv_area[k] = 0.0
            self.last[k] = end
