//! Whole-process measurements behind `make bench` (the criterion bench is `benches/cpu.rs`).

pub mod cold_start;
pub mod events;
pub mod floors;
pub mod requests;
pub mod throughput;
