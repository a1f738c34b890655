"""What exists and how fast: GPUs, systems, fabrics, the cluster graph, and
the time of compute, memory traffic and collectives on a placement; power.

No scheduling here. Catalog entries live in data files under ``data/``.
"""
