"""The daemon's URL when none is passed: `TETHER_URL`, or Colab's secret of that name.

On Colab the URL (which carries the access token) belongs in a secret, not in
the notebook: the key icon on the left, "Secrets", a secret named TETHER_URL,
notebook access on. `google.colab` exists only on Colab, so it is imported
only when asked for, and its absence means "not on Colab".
"""

from __future__ import annotations

import os
from typing import Any

from .wire.errors import RequestError

ENV = "TETHER_URL"
NO_URL = ("no URL: pass the URL `tether serve` printed, or set TETHER_URL "
          "(in Colab: the key icon, Secrets, TETHER_URL)")


def resolve_url(url: Any) -> Any:
    """`url` if given; else `$TETHER_URL`; else Colab's secret TETHER_URL; else RequestError.

    >>> loader = tether.Loader(dataset="train", batch_size=256)  # doctest: +SKIP
    """
    if url is not None:
        return url
    found = os.environ.get(ENV) or _colab_secret(ENV)
    if not found:
        raise RequestError(NO_URL)
    return found.strip()


def _colab_secret(name: str) -> str | None:
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:  # not on Colab
        return None
    try:
        return userdata.get(name)
    except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError: both mean "none"
        return None
