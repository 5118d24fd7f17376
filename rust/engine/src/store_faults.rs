//! Fault scenarios through the protocol code over the in-memory store (`store::memory`).
