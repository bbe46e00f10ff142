//! The emulator-backed tests, one binary: each module is one area, all share one emulator
//! process (`common`), and a clean build links the SDKs once instead of once per file.

mod common;

mod archiver;
mod erase;
mod events;
mod faults;
mod local;
mod logs;
mod ops;
mod pretraffic;
mod reconciler;
mod runtime_api;
mod smoke;
mod storm;
mod template;
mod tls;
mod webhook;
