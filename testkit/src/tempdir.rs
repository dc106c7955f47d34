//! A scratch directory per test, removed on drop (also when the test panics).
//!
//! ```
//! use zt_testkit::TempDir;
//!
//! let dir = TempDir::new("doc");
//! let path = dir.write_atomic("policy.json", "{}");
//! assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
//! let kept = dir.path().to_path_buf();
//! drop(dir);
//! assert!(!kept.exists());
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory under the system temp dir, unique per process and call,
/// removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory whose name ends in `tag`; panics when it cannot be
    /// made.
    #[track_caller]
    pub fn new(tag: &str) -> Self {
        Self::try_new(tag).unwrap_or_else(|err| panic!("creating a temp dir for {tag:?}: {err}"))
    }

    /// A new empty directory whose name ends in `tag`.
    pub fn try_new(tag: &str) -> io::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Unix socket paths are short (108 bytes): stay near the root of the temp dir.
        let path = std::env::temp_dir().join(format!("zt-{}-{n}-{tag}", std::process::id()));
        // A stale directory of a previous process with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` (truncate, then write) and returns its path.
    #[track_caller]
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        path
    }

    /// Writes `contents` next to `name` and renames it over `name`, as atomic
    /// writers (configuration management, `spire-agent`) do; returns its path.
    #[track_caller]
    pub fn write_atomic(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        let tmp = self.write(&format!(".{name}.tmp"), contents);
        std::fs::rename(&tmp, &path)
            .unwrap_or_else(|err| panic!("renaming over {}: {err}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
