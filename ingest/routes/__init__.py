"""HTTP routes, one module per concern; each declares its operations on the shared `api`.

Keep ROUTE_MODULES sorted; `ingest.app` imports each so its operations register.
"""

from ingest.api import Api

api = Api(title="carmileage", version="1")

ROUTE_MODULES: tuple[str, ...] = (
    "ops",
    "pages",
    "photos",
    "providers",
    "readings",
    "results",
    "review",
    "vehicles",
)
