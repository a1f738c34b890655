"""Load the hardware and model catalogs together, with a user's catalog
file (scenario key ``catalog:`` or CLI ``--catalog FILE``) merged in."""
from __future__ import annotations

from dataclasses import dataclass

from hardware.catalog import Catalog, load_catalog
from workloads.files import read_yaml
from workloads.models import ModelCatalog, load_models


@dataclass
class Catalogs:
    hardware: Catalog
    models: ModelCatalog


def load_catalogs(user: str | dict | None = None) -> Catalogs:
    """Shipped catalogs plus `user`: a path to a YAML file, an already
    parsed mapping, or None."""
    if isinstance(user, str):
        origin = user
        data = read_yaml(user, "catalog file")
    else:
        origin, data = "catalog", user
    return Catalogs(load_catalog(data, origin), load_models(data, origin))
