//! Directories for tests that keep files (a server's `--data-dir`),
//! removed when the test ends.

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary one; removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("herald-test-{}-{:016x}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&path).expect("the temporary directory is writable");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
