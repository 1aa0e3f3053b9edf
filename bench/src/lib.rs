//! Shared helpers of Tessera's benchmark binaries (see `bench/README.md`).

pub mod latency;
