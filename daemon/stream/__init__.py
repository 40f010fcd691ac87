"""Streaming: one stream's plan, its shards read and encoded against the
client's credits, the codec and decode choices, filters and wants, and the
counters and memory budget every stream shares."""
