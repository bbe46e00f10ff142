//! The shipped crate's integration tests, one binary: the handlers over the in-memory ports
//! (`hostile`, `contract`), the parser's properties, and what must hold of `template.yaml` and
//! the docs. The tests that need the AWS emulator live in the harness (`dev/tests`).

mod contract;
mod docs;
mod hostile;
mod properties;
mod template;
mod toolchain;
