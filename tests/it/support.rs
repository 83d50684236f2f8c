//! `TestApp`: spawns the real daemon binary and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test: `TEST_APPLIANCE_BIN` when set (as for the Python
/// tests: a copy of this build, when other checkouts share the target dir and relink
/// `target/debug/appliance` between the build and the run), else cargo's.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("TEST_APPLIANCE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_appliance").to_string())
    })
}

/// A temp directory laid out like an installation, and a command builder for it.
pub struct Dirs {
    pub root: tempfile::TempDir,
    models: Option<PathBuf>,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            root: tempfile::tempdir().expect("temp dir"),
            models: None,
        }
    }

    /// Like [`Dirs::new`], but with the real default models fetched by
    /// `scripts/fetch-models` (shared, read-only use).
    pub fn with_models() -> Dirs {
        Dirs {
            models: Some(test_models_dir()),
            ..Dirs::new()
        }
    }

    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `appliance` with every directory inside the temp root and an empty config file,
    /// so nothing from the developer's own configuration leaks in.
    pub fn command(&self) -> Command {
        let config = self.path("config.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root.path())
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(self.data())
            .arg("--log-dir")
            .arg(self.path("logs"))
            .arg("--runtime-dir")
            .arg(self.path("run"))
            .arg("--models-dir")
            .arg(self.models.clone().unwrap_or_else(|| self.path("models")));
        cmd
    }

    /// Runs a CLI command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("running appliance");
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A finished CLI command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the command succeeded, printing everything it said when it did not.
    #[track_caller]
    pub fn ok(self) -> Output {
        assert_eq!(
            self.code(),
            0,
            "command failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A user with a key of the given scopes, made with the CLI.
pub fn user_key(dirs: &Dirs, name: &str, role: &str, scopes: &str) -> String {
    dirs.run(&["users", "add", name, "--role", role]).ok();
    let key = dirs
        .run(&["keys", "create", "--owner", name, "--scopes", scopes])
        .ok();
    key.stdout.trim().to_string()
}

/// A user's password, set with the CLI (it prints a generated one).
pub fn reset_password(dirs: &Dirs, name: &str) -> String {
    let out = dirs.run(&["users", "passwd", name]).ok();
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("users passwd prints the new password")
        .to_string()
}

/// Sends `bytes` on a fresh TCP connection to the daemon and returns everything it
/// answers until it closes the connection (or 10 s pass). Bypasses any client-side
/// normalisation of paths and headers.
pub fn raw_request(url: &str, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to the daemon");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

impl Dirs {
    /// Creates an administrator and an all-scopes key with the CLI (as a person would
    /// on the host) and returns the key.
    pub fn admin_key(&self) -> String {
        let add = self.run(&["users", "add", "--admin", "admin"]);
        // A second daemon on the same data dir re-uses the administrator.
        assert!(
            add.code() == 0 || add.stderr.contains("already exists"),
            "{add:?}"
        );
        let key = self
            .run(&[
                "keys", "create", "--owner", "admin", "--scopes", "all", "--name", "tests",
            ])
            .ok();
        key.stdout.trim().to_string()
    }
}

/// A running daemon.
pub struct TestApp {
    pub child: Child,
    pub url: String,
    /// Sends the admin key on every request.
    pub http: reqwest::Client,
    /// Sends no credentials.
    pub anonymous: reqwest::Client,
    /// The administrator's API key.
    pub key: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl TestApp {
    /// Starts `appliance serve` on a free port and waits until it prints its URL.
    pub fn spawn(dirs: &Dirs) -> TestApp {
        Self::spawn_with(dirs, &[])
    }

    pub fn spawn_with(dirs: &Dirs, extra: &[&str]) -> TestApp {
        Self::spawn_env(dirs, extra, &[])
    }

    /// Like [`TestApp::spawn_with`], with extra environment variables.
    pub fn spawn_env(dirs: &Dirs, extra: &[&str], env: &[(&str, &str)]) -> TestApp {
        appliance::client::tls_provider();
        let key = dirs.admin_key();
        let mut child = dirs
            .command()
            .envs(env.iter().copied())
            .args(["--port", "0", "--set", "log.format=json"])
            .args(extra)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning appliance serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let url = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "daemon did not become ready; stderr:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        TestApp {
            child,
            url,
            http: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .unwrap(),
            anonymous: reqwest::Client::new(),
            key,
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// Sends a signal with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success());
    }

    /// Waits for the process to exit (bounded) and returns its status and stderr.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
                return (status, stderr);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!("daemon did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` satisfies `ready` or the limit passes.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether a file is non-empty.
pub fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
}

/// The directory holding the real default models. Tests that need weights fail loudly
/// when they are missing rather than skipping.
pub fn test_models_dir() -> PathBuf {
    let dir = std::env::var_os("TEST_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/appliance/models")
        });
    assert!(
        dir.join("SmolLM2-135M-Instruct-Q4_1.gguf").exists(),
        "the default models are not in {}: run `scripts/fetch-models {}` (scripts/test does)",
        dir.display(),
        dir.display()
    );
    dir
}

/// A daemon started with no users at all (first-run setup open): the process, its URL
/// and the rest of its standard output.
pub struct FreshDaemon {
    pub child: Child,
    pub url: String,
    pub lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl FreshDaemon {
    pub fn spawn(dirs: &Dirs) -> FreshDaemon {
        appliance::client::tls_provider();
        let mut child = dirs
            .command()
            .args(["--port", "0", "serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning appliance serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_string();
        FreshDaemon { child, url, lines }
    }
}

impl Drop for FreshDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` with the admin key and parse the JSON answer.
pub async fn get_json(app: &TestApp, path: &str) -> serde_json::Value {
    let r = app.get(path).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("GET {path}: {status} {text}"))
}
