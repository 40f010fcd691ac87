"""Generated protobuf code for the tether.v1 wire contract (see protos/)."""
