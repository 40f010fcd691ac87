"""The loader's stages, one a module, in the order a shard meets them:

    receiver (credits, acks) -> resumable (reconnects) -> decoder (threads,
    images) -> ordering or merger (exactly once) -> batcher (exact batches)

`assembly` builds that chain for one iteration of a Loader."""
