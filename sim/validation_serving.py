"""Predicted vs published serving figures (shared/validation/inference.csv),
one dict per row with the same keys as sim.validation_training's rows
(family, source, model, gpu, gpus, metric, published, predicted, error).

Filled in by the serving performance model; until then it has no rows and
`gpusim validate` reports the training rows only.
"""
from __future__ import annotations


def serving_rows() -> list[dict]:
    """Every serving row, predicted (none yet)."""
    return []
