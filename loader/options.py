"""The Loader's keyword arguments as a few small frozen values, each checked once.

Users keep the flat keywords (`tether.Loader(url, dataset=..., batch_size=...)`);
the Loader builds these from them and hands each to the stage that uses it:

    StreamSpec (tether.wire.spec)       what the stream asks the daemon for
    SequenceOptions (tether.sequences)  pad and pack, on delivery
    Reach                               which daemons, how, how far ahead
    CacheOptions                        the disk cache of rows (tether.cache)
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .colab import resolve_url
from .retry import RetryPolicy
from .wire.codecs import NAMES as CODEC_NAMES
from .wire.codecs import available_codecs
from .wire.errors import RequestError, require
from .wire.sizes import parse_size
from .wire.spec import StreamSpec
from .wire.url import Endpoint, parse_url


@dataclass(frozen=True)
class Reach:
    """Which daemons serve the stream, through what, retried how, and how many
    shards (`prefetch`) the loader holds ahead of the training loop."""

    endpoints: tuple[Endpoint, ...]
    proxy: str | None = None  # an HTTP CONNECT proxy, "http://HOST:PORT" (rpc.open_channel)
    retry: RetryPolicy = RetryPolicy()
    prefetch: int = 8
    decode_threads: int = 1

    @classmethod
    def of(cls, url: Any, proxy: str | None, retry: RetryPolicy | None, prefetch: Any,
           decode_threads: int | None) -> Reach:
        url = resolve_url(url)  # None: $TETHER_URL, or Colab's secret TETHER_URL
        urls = [url] if isinstance(url, str | Endpoint) else list(url)
        require(bool(urls), "pass the URL `tether serve` printed, or a list of them")
        require(isinstance(prefetch, int) and not isinstance(prefetch, bool) and prefetch >= 1,
                f"prefetch must be at least 1 shard, got {prefetch!r:.80}")
        return cls(tuple(u if isinstance(u, Endpoint) else parse_url(u) for u in urls), proxy,
                   retry or RetryPolicy(), prefetch, decode_threads or min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class CacheOptions:
    """Where on this machine's disk delivered rows are kept, and how many bytes at most."""

    directory: str | os.PathLike
    limit: int

    @classmethod
    def of(cls, directory: str | os.PathLike | None, limit: int | str, reach: Reach,
           spec: StreamSpec) -> CacheOptions | None:
        if directory is None:
            return None
        require(len(reach.endpoints) == 1,
                "cache= keeps the rows of a dataset served by one daemon; a dataset split over "
                "several daemons cannot be cached (yet)")
        require(spec.on_bad_image == "error",
                "cache= needs every row delivered: on_bad_image='skip' leaves rows out")
        return cls(directory, parse_size(limit) if isinstance(limit, str) else int(limit))


def stream_spec(dataset: str | None, batch_size: int | None, *, columns: Sequence[str] | None,
                shuffle: bool, seed: int | None, shuffle_window: int | str | None,
                process_index: int | None, process_count: int | None, codec: str,
                image_size: tuple[int, int] | None, decode: str, filter: str | None,
                sql: str | None, fill_null: Mapping[str, Any] | None,
                null_masks: Sequence[str] | bool, **rest: Any) -> StreamSpec:
    """The request the Loader's keywords make. `rest` are StreamSpec's own fields."""
    require(dataset is not None or sql is not None,
            "name a dataset (tether ls lists them), or pass sql=...")
    require(codec in ("auto", *available_codecs()) or codec not in CODEC_NAMES,
            f"codec {codec!r} needs pyarrow on this machine: pip install pyarrow")
    process_index, process_count = _process_layout(process_index, process_count)
    require(not (shuffle and process_count > 1 and seed is None),
            "several processes must share one seed to split one shuffled order: pass seed=")
    if seed is None:  # a shuffled run always has a seed, to be reproduced and resumed
        seed = secrets.randbits(63) if shuffle else 0
    return StreamSpec(
        dataset=dataset or "sql",  # a query's result is named "sql" in messages
        batch_size=batch_size, columns=tuple(columns or ()), shuffle=shuffle, seed=seed,
        shuffle_window_bytes=_window_bytes(shuffle_window), process_index=process_index,
        process_count=process_count, codec=codec, image_size=image_size,
        decode=_decode_place(decode, image_size), filter=filter or "", sql=sql or "",
        fill_null=_fills(fill_null), null_masks=() if isinstance(null_masks, bool) else
        tuple(null_masks), null_masks_all=null_masks is True, **rest)


def _fills(fill_null: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """fill_null's pairs; dates and times (datetime, numpy datetime64) as ISO text."""
    if fill_null is None:
        return ()
    require(isinstance(fill_null, Mapping), "fill_null maps column names to a value, e.g. "
            f"fill_null={{'age': -1}}; got {fill_null!r:.80}")
    return tuple((name, _fill_value(value)) for name, value in fill_null.items())


def _fill_value(value: Any) -> Any:
    if isinstance(value, np.generic) and value.dtype.kind in "Mm" or hasattr(value, "isoformat"):
        return str(value) if isinstance(value, np.generic) else value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def _process_layout(index: int | None, count: int | None) -> tuple[int, int]:
    """The given process index and count, else torch.distributed's rank and world
    size (when a process group is initialized), else JAX's (when jax is
    imported), else 0 of 1."""
    if index is None or count is None:
        from .jax import process_layout

        known_index, known_count = _torch_layout() or process_layout() or (0, 1)
        index = known_index if index is None else index
        count = known_count if count is None else count
    return index, count


def _torch_layout() -> tuple[int, int] | None:
    """`(rank, world_size)` of torch.distributed's default group, if one is
    initialized; never imports torch (a process that has not imported
    torch.distributed has no process group)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist.get_rank(), dist.get_world_size()


def _decode_place(decode: str, image_size: tuple[int, int] | None) -> str:
    """Where images may be decoded: without Pillow here, only on the daemon."""
    from .wire.images.decode import available

    if image_size is None or available():
        return decode
    require(decode != "loader", "decode='loader' needs Pillow on this machine: pip install "
            "'tether[images]', or decode='daemon'")
    return "daemon"


def _window_bytes(window: int | str | None) -> int:
    """shuffle_window as bytes of rows: an int, or a size such as "256MB"."""
    if window is None:
        return 0
    if isinstance(window, str):
        try:
            return parse_size(window)
        except ValueError as exc:
            raise RequestError(f"shuffle_window: {exc}") from None
    return window
