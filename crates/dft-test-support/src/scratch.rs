//! Scratch directories for tests: removed when the test that made one finishes, kept (and named on
//! stderr) when it panics, so a failing test's files can still be looked at. Tests that wrote model
//! checkpoints into `/tmp` and never removed them once filled a CI machine's disk.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A fresh, empty directory under [`std::env::temp_dir`]; dereferences to its [`Path`]. Keep the guard
/// alive for as long as the test (and any process or thread it starts) uses the directory.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// `temp_dir()/name`, emptied of whatever an earlier run left there, then created.
    pub fn new(name: impl AsRef<Path>) -> Self {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ScratchDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<OsStr> for ScratchDir {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
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

#[cfg(test)]
mod tests {
    use super::ScratchDir;

    #[test]
    fn emptied_when_made_removed_when_dropped_and_kept_after_a_panic() {
        let name = format!("dft-scratch-self-test-{}", std::process::id());
        let path = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("stale"), "from an earlier run").unwrap();
        let dir = ScratchDir::new(&name);
        assert_eq!(dir.path(), path);
        assert!(dir.is_dir() && !dir.join("stale").exists(), "a fresh, empty directory");
        std::fs::write(dir.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists(), "removed when dropped");

        let dir = ScratchDir::new(&name);
        let panicked = std::thread::spawn(move || {
            let _dir = dir;
            panic!("a failing test (on purpose)");
        })
        .join();
        assert!(panicked.is_err());
        assert!(path.is_dir(), "kept after a panic");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
