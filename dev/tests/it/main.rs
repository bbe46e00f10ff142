//! The integration tests, one binary: each module is one area, all share one emulator process
//! (`common`), and a clean build links the SDKs once instead of once per file.

mod common;

mod archiver;
mod docs;
mod events;
mod faults;
mod hostile;
mod logs;
mod ops;
mod properties;
mod reconciler;
mod runtime_api;
mod template;
mod tls;
mod webhook;
