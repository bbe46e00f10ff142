//! The pns-cdr harness: [`local`] runs the shipped handlers on one machine against an embedded
//! AWS emulator; [`sim`] pushes NXCLOUD-style load and proves nothing was lost; [`bench`] holds
//! the whole-process measurements behind `make bench`.

pub mod bench;
pub mod local;
pub mod sim;

use std::path::{Path, PathBuf};

/// The repository root: `template.yaml`, `events/` and the project virtualenv `.venv`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dev/ sits in the repository")
        .to_path_buf()
}
