"""Search stage: a STAC API, a static catalog or collection, an ItemCollection file, stac-geoparquet, or an item
list -> pystac Items.

The search arguments are normalised once by pystac-client's ``ItemSearch`` (without a request), so a static
catalog is filtered exactly as a STAC API would filter it: the same bbox and datetime ranges ("2020-06" is the
whole month), CQL2 filters evaluated with the ``cql2`` library, the ``query`` extension's operators.

Modules, each importing only the ones before it: ``_query`` (:class:`SearchArgs`, :class:`Query`, a catalog URL's
credentials split off what is stored), ``_fetch`` (STAC documents and API searches over the network, retried),
``_static`` (static inputs filtered as an API would), ``_parquet`` (stac-geoparquet files and directories, filters
pushed down to pyarrow), ``_since`` (a stored search narrowed to what can be new: a refresh's), ``_search``
(:func:`search_items`: whichever kind of catalog it is).
"""

from stackcube.search._query import (
    SEARCH_KEYWORDS,
    CatalogLike,
    Query,
    SearchArgs,
    make_query,
    require_items,
    split_credentials,
    with_catalog_credentials,
)
from stackcube.search._search import Found, search_again, search_items
from stackcube.search._since import Since

__all__ = [
    "SEARCH_KEYWORDS",
    "CatalogLike",
    "Found",
    "Query",
    "SearchArgs",
    "Since",
    "make_query",
    "require_items",
    "search_again",
    "search_items",
    "split_credentials",
    "with_catalog_credentials",
]
