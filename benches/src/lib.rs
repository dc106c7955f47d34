//! Shared helpers for the zt benchmarks.
