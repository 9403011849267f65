//! Criterion benchmarks for mailferry; see `benches/`.
