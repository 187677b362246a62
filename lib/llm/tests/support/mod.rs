//! Running the `dynamo` binary from the integration tests, as a user would,
//! and reading the repository's files.
// Each test binary uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// A file of the repository, by its path from the root.
pub fn read_repo_file(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running `dynamo` process, killed when dropped; its stderr (the logs)
/// goes to a file that [`Dynamo::logs`] reads, for a failing test to show.
pub struct Dynamo {
    child: Child,
    stderr: PathBuf,
}

impl Dynamo {
    /// What the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_else(|e| format!("(no logs: {e})"))
    }
}

impl Drop for Dynamo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The lines `dynamo` prints on stdout.
pub type StdoutLines = Lines<BufReader<ChildStdout>>;

/// Starts `dynamo serve <args>` without `NATS_SERVER` or `DYN_SYSTEM_PORT`
/// from the test's environment, then with `env` set; returns the process and
/// its stdout, lines read so far: none.
pub fn serve(args: &[&str], env: &[(&str, &str)]) -> (Dynamo, StdoutLines) {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stderr = std::env::temp_dir().join(format!("dynamo-test-{}-{n}.log", std::process::id()));
    let log = std::fs::File::create(&stderr).expect("a log file in the temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dynamo"))
        .arg("serve")
        .args(args)
        .env_remove("DYN_SYSTEM_PORT")
        .env_remove("NATS_SERVER")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("dynamo serve starts");
    let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    (Dynamo { child, stderr }, lines)
}

/// The next line `dynamo` printed.
pub fn next_line(lines: &mut StdoutLines) -> String {
    lines
        .next()
        .expect("dynamo printed a line")
        .expect("stdout reads")
}

/// Reads lines until one starts with `prefix` and returns it; panics after
/// `within` (or when the process ends first).
pub fn line_starting(lines: &mut StdoutLines, prefix: &str, within: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let line = next_line(lines);
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line starting {prefix:?} within {within:?}"
        );
    }
}

/// Keeps reading what the process prints, so its stdout never fills up.
pub fn drain(lines: StdoutLines) {
    std::thread::spawn(move || lines.for_each(drop));
}

/// Runs `dynamo <args>` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynamo"))
        .args(args)
        .env_remove("NATS_SERVER")
        .output()
        .expect("dynamo runs")
}
