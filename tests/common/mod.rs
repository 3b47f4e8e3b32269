//! Shared by the end-to-end tests: start the real `fuwa` binary on a config,
//! find free ports, talk to it over TCP, read what it wrote.
#![allow(dead_code)]

pub mod aws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fuwa")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Byte streams captured from real forward clients (tests/data/forward/README.md).
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests").join("data").join("forward")
}

/// A port nobody listens on right now (TCP and UDP). Only for a port that
/// must stay closed (a dead server) or one a test binds again itself: a port
/// another process should listen on is bound as port 0 and read back (see
/// `Agent::start`), since a guessed port can be taken by anyone first.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts fuwa on `config` (where `{port}` and `{dir}` are replaced) and
    /// waits until its forward port accepts connections. `{port}` is 0: the
    /// agent binds whatever port the kernel gives and the port is read from
    /// its "input listening" log line (no port is guessed and released).
    pub fn start(config: &str) -> Agent {
        Self::start_with(config, true)
    }

    pub fn start_with(config: &str, wait_port: bool) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = 0;
        let cfg = config
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("fuwa.toml");
        std::fs::write(&path, cfg).expect("write config");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let child = spawn_agent(dir.path(), stdout.clone(), stderr.clone());
        let mut a = Agent {
            child,
            dir,
            port,
            stderr,
            stdout,
        };
        if wait_port {
            a.wait_port();
        }
        a
    }

    /// Kills the agent with SIGKILL (no chance to flush anything).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the agent again on the same config, data dir and port (the
    /// port it had: its config is written again with that port, which the
    /// kernel gives back since the agent just released it).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut s) = self.stderr.lock() {
            s.push_str(RESTART_MARK);
        }
        self.pin_port();
        self.child = spawn_agent(self.dir.path(), self.stdout.clone(), self.stderr.clone());
        self.wait_port();
    }

    /// Rewrites the config file (for the next restart).
    /// (`{port}` becomes the port the agent got.)
    pub fn rewrite_config(&self, config: &str) {
        let cfg = config
            .replace("{port}", &self.port.to_string())
            .replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(self.dir.path().join("fuwa.toml"), cfg).expect("write config");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes the port the agent got into its config file in place of 0, so
    /// that a restart or reload listens where clients already connect.
    fn pin_port(&self) {
        if self.port == 0 {
            return;
        }
        let path = self.dir.path().join("fuwa.toml");
        if let Ok(cfg) = std::fs::read_to_string(&path) {
            let pinned = cfg.replace(":0\"", &format!(":{}\"", self.port));
            std::fs::write(&path, pinned).expect("write config");
        }
    }

    /// Waits until the agent listens (its port read from its log when it
    /// was started on port 0) and accepts connections there.
    pub fn wait_port(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.port == 0 {
                if let Some(p) = listening_port(&self.stderr_since_restart(), "input listening") {
                    self.port = p;
                    self.pin_port();
                }
            }
            if self.port != 0 && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fuwa exited early ({status}): {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fuwa did not listen on {}: {}", self.port, self.stderr());
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What the agent logged since it was last (re)started.
    pub fn stderr_since_restart(&self) -> String {
        let all = self.stderr();
        match all.rfind(RESTART_MARK) {
            Some(i) => all[i..].to_string(),
            None => all,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                // let the pumps drain
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("fuwa did not stop on SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `cond` holds on the collected stderr.
    pub fn wait_stderr(&self, what: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RESTART_MARK: &str = "\n=== restart ===\n";

/// The port in the first log line containing `marker` (an input's or the
/// API's "... listening" line), in the text (`addr=127.0.0.1:N`,
/// `bind=127.0.0.1:N`) or JSON (`"addr":"127.0.0.1:N"`) log format.
pub fn listening_port(log: &str, marker: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let at = line.find("127.0.0.1:").or_else(|| line.find("0.0.0.0:"))?;
    let rest = &line[at..];
    let colon = rest.find(':')?;
    let digits: String = rest[colon + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok().filter(|p| *p != 0)
}

fn spawn_agent(dir: &Path, stdout: Arc<Mutex<String>>, stderr: Arc<Mutex<String>>) -> Child {
    spawn_agent_with(dir, stdout, stderr, &[])
}

/// Starts fuwa on `dir/fuwa.toml` with extra environment variables (an
/// empty value removes the variable), its output pumped into the strings.
pub fn spawn_agent_with(
    dir: &Path,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    env: &[(&str, &str)],
) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "-c"])
        .arg(dir.join("fuwa.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env(
            "FUWA_LOG",
            std::env::var("FUWA_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().expect("start fuwa");
    pump(child.stderr.take().expect("stderr"), stderr);
    pump(child.stdout.take().expect("stdout"), stdout);
    child
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

fn pump<R: Read + Send + 'static>(r: R, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut br = BufReader::new(r);
        let mut line = String::new();
        while let Ok(n) = br.read_line(&mut line) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&line);
            }
            line.clear();
        }
    });
}

/// Reads every JSON line below `dir` (recursively), with the file each came
/// from. A line cut short or a gzip member half written is what a reader
/// sees while the agent is still writing: read again until the files are
/// whole (the writer finishes within milliseconds), failing only when they
/// stay broken.
pub fn read_json_lines(dir: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_read_json_lines(dir) {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// [`read_json_lines`], or what is wrong with a file: a gzip member or a line
/// cut short is what a reader sees while the agent is still writing it.
fn try_read_json_lines(dir: &Path) -> Result<Vec<(PathBuf, serde_json::Value)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let raw = std::fs::read(&p).unwrap_or_default();
            let text = if p.extension().map(|e| e == "gz").unwrap_or(false) {
                let mut s = String::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_string(&mut s)
                    .map_err(|e| format!("gunzip {}: {e}", p.display()))?;
                s
            } else {
                String::from_utf8_lossy(&raw).into_owned()
            };
            for l in text.lines().filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_str(l)
                    .map_err(|e| format!("bad JSON line in {}: {e}: {l}", p.display()))?;
                out.push((p.clone(), v));
            }
        }
    }
    Ok(out)
}

/// Waits until `count` JSON lines exist below `dir`. A file caught halfway
/// through a write is read again; one still unreadable at the deadline fails
/// the test.
pub fn wait_lines(
    dir: &Path,
    count: usize,
    timeout: Duration,
) -> Vec<(PathBuf, serde_json::Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let late = Instant::now() > deadline;
        match try_read_json_lines(dir) {
            Ok(v) if v.len() >= count || late => return v,
            Err(e) if late => panic!("{e}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A config: forward on {port} → file output under {dir}/out, memory buffer
/// flushing every 100ms.
pub fn forward_to_file(extra_input: &str) -> String {
    input_to_file("forward", extra_input)
}

/// A config: an input of `kind` on {port} → file output {dir}/out/<tag>.log
/// (tag and unix_float time added), memory buffer flushing every 100ms.
pub fn input_to_file(kind: &str, extra_input: &str) -> String {
    format!(
        r#"[[input]]
type = "{kind}"
bind = "127.0.0.1:{{port}}"
{extra_input}

[[output]]
match = "**"
type = "file"
path = "{{dir}}/out/${{tag}}.log"
tag_key = "tag"
time_key = "time"
time_format = "unix_float"
[output.buffer]
type = "memory"
flush_interval = "100ms"
"#
    )
}

/// Encodes a msgpack value.
pub fn mp(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode");
    out
}

/// Reads one msgpack value from the stream.
pub fn read_mp(s: &mut TcpStream) -> rmpv::Value {
    rmpv::decode::read_value(s).expect("read msgpack reply")
}

pub fn send(s: &mut TcpStream, b: &[u8]) {
    s.write_all(b).expect("send");
}

/// A PackedForward message of events `{"id": first..first+n}` with an ack
/// request.
pub fn message(tag: &str, first: u64, n: u64, chunk: &str) -> Vec<u8> {
    use rmpv::Value as V;
    let mut body = Vec::new();
    for id in first..first + n {
        let rec = V::Map(vec![
            (V::from("id"), V::from(id)),
            (V::from("pad"), V::from("x".repeat(40))),
        ]);
        body.extend(mp(&V::Array(vec![V::from(1_700_000_000u32), rec])));
    }
    mp(&V::Array(vec![
        V::from(tag),
        V::Binary(body),
        V::Map(vec![(V::from("chunk"), V::from(chunk))]),
    ]))
}

/// `len` letters and digits from an xorshift generator at `state`: text
/// that barely compresses (big objects in few events), the same every run.
pub fn incompressible_text(state: &mut u64, len: usize) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            ALNUM[(*state % 62) as usize] as char
        })
        .collect()
}

/// kB of a /proc/<pid>/status field (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("field")
}
