//! Whole-process measurements behind `make bench` (the criterion bench is `benches/webhook.rs`).

pub mod cold_start;
pub mod floors;
pub mod requests;
pub mod throughput;
