//! Scratch directories for this crate's unit tests: removed when the test that made one finishes, kept
//! (and named on stderr) when it panics. The same guard as `dft_test_support::scratch::ScratchDir`,
//! which this crate cannot use (dft-test-support depends on dft-train).

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under [`std::env::temp_dir`]; dereferences to its [`Path`].
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// `temp_dir()/name`, emptied of whatever an earlier run left there, then created.
    pub(crate) fn new(name: impl AsRef<Path>) -> Self {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir { path }
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept scratch dir {}", self.path.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            // Never a second failure: a test may have removed the directory itself.
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("could not remove scratch dir {}: {e}", self.path.display());
            }
        }
    }
}
