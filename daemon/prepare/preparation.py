"""What the daemon's owner prepares where the data lives, as datasets.

`tether serve` finds datasets in files (tether.daemon.sources); these flags
derive more from them, all on this machine:

    postgresql://...            each readable table of a database server
    --sql NAME=QUERY            a query's result (DuckDB over the served files,
                                or in a served database when NAME is "db.x")
    --transform NAME=MOD:FUNC   a dataset passed through the owner's function
    tether.serve(NAME=ddf)      a Dask collection the caller computes (awaited.py)

Each becomes a `Found`, like a file, so the catalog opens, lists and
reopens it the same way; what it opens is a snapshot (tether.daemon.sources.snapshots)
of the derived rows. The remote side only ever names datasets: the one way
it sends a query is `Loader(sql=...)`, refused unless `--allow-sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..sources import Found

DATABASE_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(text: str) -> bool:
    return text.lower().startswith(DATABASE_SCHEMES)


@dataclass(frozen=True)
class Preparation:
    sql: tuple[tuple[str, str], ...] = ()  # (dataset name, query)
    transforms: tuple[tuple[str, str], ...] = ()  # (dataset name, "module:function")
    refresh: bool = False  # new snapshots, not the cached ones
    allow_sql: bool = False  # Loader(sql=...) from the remote side
    dask: str | None = None  # a Dask scheduler whose workers run the transforms
    awaited: tuple[tuple[str, str], ...] = ()  # (dataset name, snapshot path being written)


def derive(found: Sequence[Found], databases: Sequence[str],
           preparation: Preparation) -> list[Found]:
    """The datasets of the served files (`found`) and servers (`databases`), with
    the owner's queries added and transforms applied."""
    found = list(found)
    for url in databases:
        from ..sources.postgres import discover_database

        found.extend(discover_database(url, preparation.refresh))
    for name, query in preparation.sql:
        from .sql_datasets import query_dataset

        found.append(query_dataset(name, query, found, preparation.refresh))
    for name, path in preparation.awaited:
        from pathlib import Path

        from .awaited import awaited

        found.append(awaited(name, Path(path)))
    names = {f.name for f in found}
    for name, target in preparation.transforms:
        from .transforms import transformed

        if name not in names:
            raise ValueError(f"--transform {name}={target}: no dataset {name!r}; served: "
                             f"{', '.join(sorted(names))}")
        found = [transformed(f, target, preparation.refresh, preparation.dask)
                 if f.name == name else f
                 for f in found]
    return found
