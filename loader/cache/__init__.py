"""The loader's disk cache of delivered rows (Loader(cache=...)): the store
(`row_cache`), its directories and their limits (`directory`), and the
shards it makes whole from disk and the wire (`cached_shards`)."""
