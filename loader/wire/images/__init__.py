"""Image decoding both sides run (daemon and loader), so that pixels are the
same wherever an image was decoded: one image (`decode`), a shard's image
columns (`columns`)."""
