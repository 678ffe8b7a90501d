"""The model catalog: every model, provider and limit, loaded once from data.

Schemas, validation, listings and the CLI are all derived from it; no limit is written
anywhere else.
"""

from .loader import Catalog, CatalogAdditions, load_catalog
from .routes import Route
from .sizes import ResolvedSize, resolve_size
from .spec import KnobDef, KnobRule, ModelSpec, Offering, ProviderSpec, SizeRule

__all__ = [
    "Catalog",
    "CatalogAdditions",
    "KnobDef",
    "KnobRule",
    "ModelSpec",
    "Offering",
    "ProviderSpec",
    "ResolvedSize",
    "Route",
    "SizeRule",
    "load_catalog",
    "resolve_size",
]
