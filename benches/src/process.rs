//! Processes of a benchmark: children ended on drop, pinned to a core, and their
//! CPU time, memory, page faults and context switches read from `/proc`.
//!
//! ```
//! use zt_benches::process::{cpu_ns, rss_kib};
//!
//! let me = [std::process::id()];
//! assert!(rss_kib(&me) > 0);
//! let before = cpu_ns(&me);
//! let _spin: u64 = (0..1_000_000_u64).map(std::hint::black_box).sum();
//! assert!(cpu_ns(&me) >= before);
//! ```

use std::path::Path;
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

/// A child process ended when dropped: ours by closing their stdin, nginx by
/// SIGTERM to its master, which stops its workers.
#[derive(Debug)]
pub struct Managed {
    /// The process.
    pub child: Child,
    /// Its standard input, closed to end it; `None` for nginx.
    pub stdin: Option<ChildStdin>,
    /// nginx's worker processes, killed should they outlive their master.
    pub nginx_workers: Vec<u32>,
}

impl Drop for Managed {
    fn drop(&mut self) {
        if self.stdin.take().is_none() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for worker in &self.nginx_workers {
            // Only a worker that outlived its master, not a process that got its id since.
            let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap_or_default();
            if comm.trim() == "nginx" {
                let _ = Command::new("kill")
                    .args(["-KILL", &worker.to_string()])
                    .status();
            }
        }
    }
}

/// A command running `program`, pinned to `core` with `taskset` when there is one.
pub fn pinned(program: &Path, core: Option<&str>) -> Command {
    if let Some(core) = core {
        let mut command = Command::new("taskset");
        command.args(["-c", core]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command name may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Minor and major page faults of `pids` (fields 10 and 12 of `/proc/PID/stat`).
pub fn page_faults(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name, which may hold spaces, comes field 3 (state).
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let minor = fields.get(7)?.parse::<u64>().ok()?;
            let major = fields.get(9)?.parse::<u64>().ok()?;
            Some(minor + major)
        })
        .sum()
}

/// The file `name` of every thread of `pids` (`/proc/PID/task/TID/NAME`), read;
/// threads that ended meanwhile are skipped.
fn thread_files<'a>(pids: &'a [u32], name: &'a str) -> impl Iterator<Item = String> + 'a {
    pids.iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter_map(move |task| std::fs::read_to_string(task.path().join(name)).ok())
}

/// Context switches, voluntary and not, of every thread of `pids`.
pub fn context_switches(pids: &[u32]) -> u64 {
    thread_files(pids, "status")
        .map(|status| {
            status
                .lines()
                .filter(|line| line.contains("ctxt_switches:"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Nanoseconds on CPU of every thread of `pids` (the first field of `schedstat`:
/// user and kernel time).
pub fn cpu_ns(pids: &[u32]) -> u64 {
    thread_files(pids, "schedstat")
        .filter_map(|schedstat| schedstat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Resident memory of `pids`, in KiB.
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches(" kB")
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Nanoseconds on CPU of the calling thread (`/proc/thread-self/schedstat`). The
/// kernel brings a running thread's total up to date at its scheduler ticks, so a
/// reading can lag by a tick (1–4 ms): time spans of a second or so, or sum many.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|schedstat| schedstat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
