//! A workspace binary run as a separate process, watched from outside as
//! an attacker's victim: its stdout and stderr, its open file descriptors,
//! its resident memory, and signals.
//!
//! The binaries are those `cargo build -p wsgrpc-example -p wsgrpc-bridge`
//! left in `<workspace>/target/debug`, which must be newer than their
//! sources; set `WSGRPC_BIN_DIR` to run another build.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Where the workspace's binaries are.
pub fn binary_dir() -> PathBuf {
    match std::env::var_os("WSGRPC_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug")),
    }
}

/// The path of the workspace binary `name`.
pub fn binary(name: &str) -> PathBuf {
    binary_dir().join(name)
}

/// The newest modification time of the files at or below `path`.
fn newest(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest(&entry.ok()?.path()))
        .max()
}

/// The sources a binary was built from, as cargo's dep-info file beside it
/// (`<binary>.d`) lists them.
fn sources_of(path: &std::path::Path) -> Vec<PathBuf> {
    let deps = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let Some((_, sources)) = deps.split_once(": ") else {
        return Vec::new();
    };
    sources
        .replace("\\ ", "\u{0}")
        .split_whitespace()
        .map(|source| PathBuf::from(source.replace('\u{0}', " ")))
        .collect()
}

/// Fails unless the workspace binary at `path` exists and is newer than
/// every source cargo built it from: `cargo test` does not build the
/// binaries of other packages (`cargo test --workspace` builds
/// wsgrpc-bridge's, not wsgrpc-example's), and a stale one would be
/// attacked instead. Not checked where `WSGRPC_BIN_DIR` chooses the
/// binaries.
fn check_fresh(path: &std::path::Path) {
    let rebuild = "run `cargo build -p wsgrpc-example -p wsgrpc-bridge` first \
                   (or set WSGRPC_BIN_DIR to the binaries to attack)";
    let built = std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|err| panic!("{}: {err}: {rebuild}", path.display()));
    if std::env::var_os("WSGRPC_BIN_DIR").is_some() {
        return;
    }
    let changed: Vec<String> = sources_of(path)
        .into_iter()
        .filter(|source| newest(source).is_some_and(|modified| modified > built))
        .map(|source| source.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "{} is older than its sources ({}): {rebuild}",
        path.display(),
        changed.join(", ")
    );
}

/// A running binary. Dropping it kills the process.
pub struct Process {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// Copies everything `from` writes into `into`, on a thread of its own, so
/// that the process never blocks on a full pipe.
fn drain(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => lock(&into).extend_from_slice(&buf[..n]),
            }
        }
    });
}

fn lock(bytes: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    bytes.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Entries in `/proc/PID/fd`: the open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Resident memory of process `pid` in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Removes ANSI colour sequences (`ESC [ … m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Process {
    /// Starts the workspace binary `name` with `args` and `env`, logging at
    /// `info` without colours.
    pub fn start(name: &str, args: &[String], env: &[(String, String)]) -> Self {
        let path = binary(name);
        check_fresh(&path);
        let mut command = Command::new(&path);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("WSGRPC_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", path.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().expect("piped"), stdout.clone());
        drain(child.stderr.take().expect("piped"), stderr.clone());
        Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stdout)).into_owned()
    }

    /// Everything written to stderr so far, colours removed.
    pub fn stderr(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&lock(&self.stderr)))
    }

    /// Everything the process wrote to either stream: its log, wherever
    /// it goes (stdout then stderr, colours removed).
    pub fn log(&self) -> String {
        format!("{}{}", strip_ansi(&self.stdout()), self.stderr())
    }

    /// Bytes written to stdout and stderr so far.
    pub fn log_len(&self) -> usize {
        lock(&self.stdout).len() + lock(&self.stderr).len()
    }

    /// Lines written to stdout and stderr so far.
    pub fn log_lines(&self) -> usize {
        let count = |bytes: &Mutex<Vec<u8>>| lock(bytes).iter().filter(|&&b| b == b'\n').count();
        count(&self.stdout) + count(&self.stderr)
    }

    /// The last `max` bytes of the log (both streams), for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        let text = self.log();
        let mut start = text.len().saturating_sub(max);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    /// Waits until `found` finds something in (stdout, stderr), failing if
    /// the process exits or `timeout` passes first.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut found: impl FnMut(&str, &str) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = found(&self.stdout(), &self.stderr()) {
                return value;
            }
            if let Some(status) = self.exited() {
                // Let the drain threads catch the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "{} exited at start ({status}); its output:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not get ready within {timeout:?}; its output:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Entries in `/proc/PID/fd`: the process's open descriptors.
    pub fn fd_count(&self) -> usize {
        fd_count(self.pid())
    }

    /// Resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Sends SIGTERM, as a service manager stopping it would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("runs kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
