//! Instructions (callgrind) and system calls (strace) of a server process under
//! a given load: `compare --instructions` and `--syscalls`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use zt_benches::counters::{Counter, count};
//!
//! let exe = std::env::current_exe()?; // answers `serve KIND DIR` with `listening ADDR`
//! let dir = std::path::Path::new("/tmp/material");
//! let out = dir.join("callgrind.out");
//! let total = count(Counter::Instructions, &exe, "plain", dir, &out, |_addr| Ok(()))?;
//! println!("{total} instructions");
//! # Ok(())
//! # }
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `--instructions` and `--syscalls` count in the server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// User-space instructions, with `valgrind --tool=callgrind`.
    Instructions,
    /// System calls, with `strace -c`.
    Syscalls,
}

/// Runs `exe serve KIND DIR` under callgrind or strace while `load` runs against
/// it; returns the instructions it executed or the system calls it made, in all.
///
/// # Errors
///
/// When the counter cannot run, the server does not start, `load` fails, or the
/// counter's output holds no total.
pub fn count(
    counter: Counter,
    exe: &Path,
    kind: &str,
    dir: &Path,
    out: &Path,
    load: impl FnOnce(SocketAddr) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    let mut command = match counter {
        Counter::Instructions => {
            let mut command = Command::new("valgrind");
            command
                .args(["--tool=callgrind", "-q"])
                .arg(format!("--callgrind-out-file={}", out.display()));
            command
        }
        Counter::Syscalls => {
            let mut command = Command::new("strace");
            command.args(["-f", "-c", "-o"]).arg(out);
            command
        }
    };
    let mut child = command
        .arg(exe)
        .args(["serve", kind])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| format!("cannot run {counter:?} counter (valgrind, strace): {err}"))?;
    let stdin = child.stdin.take();
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("server {kind} did not start: {line:?}"))?
        .parse()?;
    let result = load(addr);
    drop(stdin);
    child.wait()?;
    result?;
    let profile = std::fs::read_to_string(out)?;
    let total = match counter {
        Counter::Instructions => profile
            .lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or_else(|| line.strip_prefix("summary:"))
            })
            .and_then(|total| total.split_whitespace().next()?.parse().ok()),
        // `% time  seconds  usecs/call  calls  [errors]  total`
        Counter::Syscalls => profile
            .lines()
            .find(|line| line.trim_end().ends_with(" total"))
            .and_then(|total| total.split_whitespace().nth(3)?.parse().ok()),
    };
    total.ok_or_else(|| format!("no total in {}", out.display()).into())
}
