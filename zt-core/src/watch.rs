//! Watching files that are re-read when they change: credentials today, the
//! authorization policy next.
//!
//! [`FileWatcher`] turns file system notifications into "re-read now" ticks:
//!
//! - It watches the **parent directories** of the files, not the files: Kubernetes
//!   Secret volumes and csi-driver-spiffe swap a `..data` symlink, and tools that write
//!   atomically rename a new file over the old one; a watch on the old file's inode
//!   would see neither.
//! - It passes on only events naming a watched file, `..data` or a watched directory
//!   itself; our own reads (open and close-without-write events) are ignored, so
//!   re-reading never wakes the watcher again.
//! - It **debounces**: a burst of events (truncate, write, close; three files written
//!   one after another) becomes one tick once the directory has been quiet for the
//!   debounce period, or at the latest after ten periods, so a writer that never
//!   stops cannot starve the reader.
//! - A **safety-net** tick comes every poll interval after the last tick, because
//!   inotify misses changes on some volumes (network file systems, some FUSE mounts,
//!   files changed from another mount namespace). An unchanged directory costs nothing
//!   else.
//! - A watched directory that is deleted, or replaced by another, is **re-armed**:
//!   every tick checks each directory's identity (device and inode), and while one
//!   is missing it is looked for once a second; re-arming yields a tick, since its
//!   files may have changed unseen. A directory whose watch the kernel reported
//!   gone (deleted or moved away) is re-armed even when the one now at its path has
//!   the same identity: file systems reuse a freed inode number at once, so a
//!   directory deleted and recreated between two ticks looks unchanged.
//!
//! [`read_bounded`] reads a file without ever reading more than a limit, refusing
//! directories, FIFOs and devices.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::Error;

/// How long a directory must be quiet before a tick.
pub(crate) const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// The safety-net interval: a tick at least this often, events or not.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// How often a missing watched directory is looked for.
const REARM_RETRY: Duration = Duration::from_secs(1);

/// A burst of events delays the tick by at most this many debounce periods.
const MAX_DEBOUNCE_PERIODS: u32 = 10;

/// The symlink Kubernetes' atomic writer swaps to publish a new set of files.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Timing of a [`FileWatcher`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct WatchOptions {
    /// Quiet period before a tick.
    pub(crate) debounce: Duration,
    /// Safety-net interval.
    pub(crate) poll_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

/// Why a [`FileWatcher`] ticked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The file system reported a change, or a watched directory came back.
    Changed,
    /// The safety-net interval passed.
    Poll,
}

/// Watches the parent directories of a set of files and ticks when they should be
/// re-read. Dropping it stops the watch.
pub(crate) struct FileWatcher {
    watcher: RecommendedWatcher,
    signal: Arc<Notify>,
    /// Set when the kernel reported a watched directory itself deleted or moved:
    /// its watch is gone whatever the directory now at its path looks like.
    watch_lost: Arc<AtomicBool>,
    dirs: Vec<WatchedDir>,
    options: WatchOptions,
    next_poll: Instant,
    next_rearm: Option<Instant>,
    burst: Option<Burst>,
}

/// Events seen and not yet ticked for: kept in the watcher, not in the future, so a
/// cancelled [`FileWatcher::changed`] resumes the debounce instead of losing it.
#[derive(Clone, Copy)]
struct Burst {
    first: Instant,
    last: Instant,
}

struct WatchedDir {
    path: PathBuf,
    /// The directory the watch was placed on, `None` while not watched.
    armed: Option<DirId>,
}

/// What tells a directory from another one created at the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirId {
    dev: u64,
    ino: u64,
}

// === impl FileWatcher ===

impl FileWatcher {
    /// Starts watching the parent directories of `files`. Directories that do not
    /// exist yet are watched once they appear.
    ///
    /// Ticks need a tokio runtime with time enabled; creating the watcher does not.
    ///
    /// # Errors
    ///
    /// When the platform watcher cannot be started (on Linux, typically the inotify
    /// instance limit `fs.inotify.max_user_instances`), or a relative path cannot be
    /// made absolute.
    pub(crate) fn new(files: &[PathBuf], options: WatchOptions) -> Result<Self, Error> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut names: HashSet<OsString> = HashSet::new();
        names.insert(OsString::from(KUBERNETES_DATA_LINK));
        for file in files {
            let file = absolute(file)?;
            let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
                continue;
            };
            names.insert(name.to_owned());
            // Events about the directory itself (deleted, moved away) name it.
            if let Some(dir_name) = dir.file_name() {
                names.insert(dir_name.to_owned());
            }
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }

        let signal = Arc::new(Notify::new());
        let watch_lost = Arc::new(AtomicBool::new(false));
        let handler_signal = Arc::clone(&signal);
        let handler_lost = Arc::clone(&watch_lost);
        let watched_dirs: HashSet<PathBuf> = dirs.iter().cloned().collect();
        let handler = move |event: notify::Result<Event>| {
            if let Ok(event) = &event
                && is_watch_lost(event, &watched_dirs)
            {
                // Raised before the signal, so the tick it leads to sees it.
                handler_lost.store(true, Ordering::Release);
            }
            // An error may mean lost events (queue overflow): re-read to be sure.
            if event.as_ref().map_or(true, |e| is_relevant(e, &names)) {
                handler_signal.notify_one();
            }
        };
        let watcher = RecommendedWatcher::new(handler, notify::Config::default())
            .map_err(|err| notify_error("starting the file watcher", err))?;

        let now = Instant::now();
        let mut this = Self {
            watcher,
            signal,
            watch_lost,
            dirs: dirs
                .into_iter()
                .map(|path| WatchedDir { path, armed: None })
                .collect(),
            options,
            next_poll: after(now, options.poll_interval),
            next_rearm: None,
            burst: None,
        };
        this.rearm();
        Ok(this)
    }

    /// Waits for the next tick: a debounced change, a re-armed directory, or the
    /// safety net.
    ///
    /// Cancel-safe: a call dropped while debouncing leaves the burst for the next one.
    pub(crate) async fn changed(&mut self) -> Trigger {
        loop {
            if let Some(burst) = self.burst {
                let quiet = after(burst.last, self.options.debounce);
                let cap = after(
                    burst.first,
                    self.options.debounce.saturating_mul(MAX_DEBOUNCE_PERIODS),
                );
                let more = tokio::time::timeout_at(quiet.min(cap), self.signal.notified()).await;
                if more.is_ok() {
                    if let Some(burst) = &mut self.burst {
                        burst.last = Instant::now();
                    }
                    continue;
                }
                self.burst = None;
                self.rearm();
                return self.tick(Trigger::Changed);
            }

            let deadline = self
                .next_rearm
                .map_or(self.next_poll, |rearm| rearm.min(self.next_poll));
            if tokio::time::timeout_at(deadline, self.signal.notified())
                .await
                .is_ok()
            {
                let now = Instant::now();
                self.burst = Some(Burst {
                    first: now,
                    last: now,
                });
                continue;
            }
            let rearmed = self.rearm();
            if Instant::now() >= self.next_poll {
                return self.tick(Trigger::Poll);
            }
            if rearmed {
                return self.tick(Trigger::Changed);
            }
        }
    }

    fn tick(&mut self, trigger: Trigger) -> Trigger {
        self.next_poll = after(Instant::now(), self.options.poll_interval);
        trigger
    }

    /// Places a watch on every directory that exists and is not watched, was
    /// replaced since it was watched, or lost its watch. Returns `true` when one
    /// was (re)armed.
    fn rearm(&mut self) -> bool {
        let mut armed_any = false;
        let mut missing = false;
        // Which directory lost its watch is not recorded: re-arming them all is
        // cheap, and rare.
        let lost = self.watch_lost.swap(false, Ordering::AcqRel);
        for dir in &mut self.dirs {
            let current = dir_id(&dir.path);
            if current.is_some() && current == dir.armed && !lost {
                continue;
            }
            if dir.armed.take().is_some() {
                // The watch follows the old directory (moved away) or is already gone
                // with it (deleted): either way, drop it.
                let _ = self.watcher.unwatch(&dir.path);
                tracing::debug!(dir = %dir.path.display(), "watched directory removed or replaced");
            }
            if current.is_none() {
                missing = true;
                continue;
            }
            match self.watcher.watch(&dir.path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    // Identified after arming: a swap in between is seen next time.
                    dir.armed = dir_id(&dir.path);
                    armed_any |= dir.armed.is_some();
                    missing |= dir.armed.is_none();
                    tracing::debug!(dir = %dir.path.display(), "watching directory");
                }
                Err(err) => {
                    missing = true;
                    tracing::debug!(dir = %dir.path.display(), error = %err, "cannot watch directory yet");
                }
            }
        }
        self.next_rearm = missing.then(|| after(Instant::now(), REARM_RETRY));
        armed_any
    }
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field(
                "dirs",
                &self.dirs.iter().map(|d| &d.path).collect::<Vec<_>>(),
            )
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Whether `event` may mean that a watched file changed.
fn is_relevant(event: &Event, names: &HashSet<OsString>) -> bool {
    if event.need_rescan() {
        return true;
    }
    // Opens and reads are ours (or harmless); a close after writing ends a write.
    if let EventKind::Access(kind) = event.kind
        && kind != AccessKind::Close(AccessMode::Write)
    {
        return false;
    }
    event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|path| path.file_name().is_some_and(|name| names.contains(name)))
}

/// Whether `event` says that a watched directory itself was deleted or moved away,
/// which ends the watch on it.
///
/// The watcher's own event thread drops such a watch after passing the event on,
/// before it handles any request to watch again, so re-arming after this event
/// never races with that cleanup.
fn is_watch_lost(event: &Event, dirs: &HashSet<PathBuf>) -> bool {
    matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && event.paths.iter().any(|path| dirs.contains(path))
}

#[cfg(unix)]
fn dir_id(path: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    meta.is_dir().then(|| DirId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[cfg(not(unix))]
fn dir_id(path: &Path) -> Option<DirId> {
    // No inode to compare: a replaced directory is noticed through its events only.
    let meta = std::fs::metadata(path).ok()?;
    meta.is_dir().then_some(DirId { dev: 0, ino: 0 })
}

/// `now + duration`, saturating at a year from now instead of overflowing.
fn after(now: Instant, duration: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(duration.min(FAR)).unwrap_or(now)
}

/// `path` made absolute against the working directory, without resolving symlinks
/// (resolving `tls.crt -> ..data/tls.crt` would pin today's `..data` target).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|source| Error::Io {
        context: format!("making {} absolute", path.display()),
        source: Arc::new(source),
    })
}

fn notify_error(context: &str, err: notify::Error) -> Error {
    let source = match err.kind {
        notify::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    Error::Io {
        context: context.to_owned(),
        source: Arc::new(source),
    }
}

pub(crate) use crate::read::read_bounded;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FileErrorKind;

    use std::sync::atomic::{AtomicUsize, Ordering};

    const BOUND: Duration = Duration::from_secs(10);

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("zt-watch-unit-{}-{n}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn options(debounce_ms: u64, poll: Duration) -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(debounce_ms),
            poll_interval: poll,
        }
    }

    async fn next_tick(watcher: &mut FileWatcher) -> Trigger {
        tokio::time::timeout(BOUND, watcher.changed())
            .await
            .expect("no tick within the bound")
    }

    #[tokio::test]
    async fn write_to_watched_file_ticks_once_after_burst() {
        let dir = TempDir::new("burst");
        let file = dir.0.join("svid.pem");
        std::fs::write(&file, "a").unwrap();
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(100, Duration::from_secs(600)),
        )
        .unwrap();
        for i in 0..5 {
            std::fs::write(&file, format!("write {i}")).unwrap();
        }
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
        // The burst was one tick: nothing more comes while nothing changes.
        let again = tokio::time::timeout(Duration::from_millis(400), watcher.changed()).await;
        assert!(again.is_err(), "a second tick for one burst: {again:?}");
    }

    #[tokio::test]
    async fn reading_watched_files_does_not_tick() {
        let dir = TempDir::new("reads");
        let file = dir.0.join("tls.crt");
        std::fs::write(&file, "pem").unwrap();
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_secs(600)),
        )
        .unwrap();
        let reader = {
            let file = file.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    read_bounded(&file, 1024).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let tick = tokio::time::timeout(Duration::from_millis(500), watcher.changed()).await;
        reader.join().unwrap();
        assert!(tick.is_err(), "our own reads woke the watcher: {tick:?}");
    }

    #[tokio::test]
    async fn unrelated_file_in_watched_directory_does_not_tick() {
        let dir = TempDir::new("unrelated");
        let file = dir.0.join("tls.crt");
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_secs(600)),
        )
        .unwrap();
        std::fs::write(dir.0.join("other.txt"), "x").unwrap();
        let tick = tokio::time::timeout(Duration::from_millis(400), watcher.changed()).await;
        assert!(
            tick.is_err(),
            "an unrelated file woke the watcher: {tick:?}"
        );
    }

    #[tokio::test]
    async fn safety_net_ticks_without_events() {
        let dir = TempDir::new("poll");
        let file = dir.0.join("tls.crt");
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_millis(200)),
        )
        .unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Poll);
        assert_eq!(next_tick(&mut watcher).await, Trigger::Poll);
    }

    #[tokio::test]
    async fn recreated_directory_is_watched_again() {
        let dir = TempDir::new("rearm");
        let sub = dir.0.join("certs");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("tls.crt");
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_secs(600)),
        )
        .unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
        std::fs::create_dir(&sub).unwrap();
        // Re-armed within the retry period: that alone is a tick.
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
        std::fs::write(&file, "new").unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
    }

    #[tokio::test]
    async fn directory_recreated_before_the_next_tick_is_watched_again() {
        let dir = TempDir::new("rearm-at-once");
        let sub = dir.0.join("certs");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("tls.crt");
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_secs(600)),
        )
        .unwrap();
        // Deleted and recreated within the debounce period: the new directory
        // usually gets the freed inode number, so its identity alone looks
        // unchanged.
        std::fs::remove_dir_all(&sub).unwrap();
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
        std::fs::write(&file, "new").unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
    }

    #[tokio::test]
    async fn directory_missing_at_start_is_watched_once_created() {
        let dir = TempDir::new("late");
        let sub = dir.0.join("later");
        let file = sub.join("svid.pem");
        let mut watcher = FileWatcher::new(
            std::slice::from_ref(&file),
            options(20, Duration::from_secs(600)),
        )
        .unwrap();
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
        std::fs::write(&file, "x").unwrap();
        assert_eq!(next_tick(&mut watcher).await, Trigger::Changed);
    }

    #[test]
    fn read_bounded_refuses_large_file_without_reading() {
        let dir = TempDir::new("large");
        let path = dir.0.join("big.pem");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(10 * 1024 * 1024).unwrap();
        let err = read_bounded(&path, 1024).unwrap_err();
        assert!(matches!(
            err.kind(),
            FileErrorKind::TooLarge {
                size: 10_485_760,
                limit: 1024
            }
        ));
        assert_eq!(err.path(), path);
    }

    #[test]
    fn read_bounded_accepts_file_at_limit() {
        let dir = TempDir::new("limit");
        let path = dir.0.join("exact.pem");
        std::fs::write(&path, [b'x'; 1024]).unwrap();
        assert_eq!(read_bounded(&path, 1024).unwrap().len(), 1024);
    }

    #[test]
    fn read_bounded_names_missing_file_and_directory() {
        let dir = TempDir::new("kinds");
        let missing = read_bounded(&dir.0.join("nope"), 1024).unwrap_err();
        assert!(matches!(missing.kind(), FileErrorKind::NotFound));
        let is_dir = read_bounded(&dir.0, 1024).unwrap_err();
        assert!(matches!(is_dir.kind(), FileErrorKind::IsDirectory));
    }

    #[cfg(unix)]
    #[test]
    fn read_bounded_refuses_fifo_without_blocking() {
        let dir = TempDir::new("fifo");
        let path = dir.0.join("fifo.pem");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let err = read_bounded(&path, 1024).unwrap_err();
        assert!(matches!(err.kind(), FileErrorKind::NotAFile), "{err}");
    }
}
