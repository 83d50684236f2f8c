//! The Unix socket for the host's CLI: its file (mode, stale files, removal), peer
//! authentication (the daemon's own user is the built-in local administrator;
//! explicit credentials win; relayed requests need a credential), the same limits as
//! TCP, and the CLI choosing it when no key is given. The test process runs as the
//! daemon's user; other Unix users are covered by tests/python/test_unix_socket.py.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Dirs, TestApp, wait_for};

fn socket(dirs: &Dirs) -> PathBuf {
    dirs.path("run").join("appliance.sock")
}

/// A client of the daemon's Unix socket, sending no credentials.
fn over_socket(dirs: &Dirs) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(socket(dirs))
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn the_daemons_own_user_is_the_local_administrator_on_the_socket() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let path = socket(&dirs);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let local = over_socket(&dirs);
    let (status, me) = json_of(
        local
            .get("http://localhost/api/v1/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["name"], "local-admin");
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["via"], "peer");
    let (status, body) = json_of(
        local
            .get("http://localhost/api/v1/status")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pid"], app.pid());

    // The same request over TCP without a key is still refused.
    let tcp = app
        .anonymous
        .get(format!("{}/api/v1/status", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(tcp.status(), 401);

    // Explicit credentials on the socket take precedence, even wrong ones.
    let wrong = local
        .get("http://localhost/api/v1/auth/me")
        .bearer_auth(
            "apl_000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let (status, me) = json_of(
        local
            .get("http://localhost/api/v1/auth/me")
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["name"], "admin");
    assert_eq!(me["via"], "api_key");

    // A browser's or a proxy's request relayed onto the socket does not get the
    // relay's Unix user.
    for (name, value) in [
        ("origin", "http://localhost"),
        ("x-forwarded-for", "203.0.113.9"),
        ("sec-fetch-site", "same-origin"),
    ] {
        let (status, body) = json_of(
            local
                .get("http://localhost/api/v1/auth/me")
                .header(name, value)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("relayed"),
            "{body}"
        );
    }
    // The Host allow-list still holds on the socket.
    let (status, _) = json_of(
        local
            .get("http://evil.example/api/v1/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn peer_actions_are_audited_as_such_and_local_admin_stays_keyless() {
    let dirs = Dirs::new();
    let _app = TestApp::spawn(&dirs);
    let local = over_socket(&dirs);
    // Managing keys works like a session (POST without CSRF: no browser is involved).
    let (status, created) = json_of(
        local
            .post("http://localhost/api/v1/keys")
            .json(&json!({"name": "from-the-host", "scopes": ["chat"], "user": "admin"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    // …but the built-in account itself gets no key and no password.
    let (status, body) = json_of(
        local
            .post("http://localhost/api/v1/keys")
            .json(&json!({"name": "mine", "scopes": ["chat"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, me) = json_of(
        local
            .get("http://localhost/api/v1/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = me["user"]["id"].as_i64().unwrap();
    let (status, body) = json_of(
        local
            .patch(format!("http://localhost/api/v1/users/{id}"))
            .json(&json!({"password": "a long password"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let login = local
        .post("http://localhost/api/v1/auth/login")
        .json(&json!({"name": "local-admin", "password": "!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    assert_ne!(dirs.run(&["users", "passwd", "local-admin"]).code(), 0);
    assert_ne!(
        dirs.run(&["keys", "create", "--owner", "local-admin"])
            .code(),
        0
    );
    assert_ne!(dirs.run(&["users", "add", "Local-Admin"]).code(), 0);

    let entry = wait_for_audit(&local, "key.create").await;
    assert_eq!(entry["actor"], "local-admin");
    assert_eq!(entry["detail"]["via"], "peer");
    assert_eq!(entry["detail"]["uid"], rustix::process::geteuid().as_raw());

    // Disabling the account turns peer administration off.
    let disabled = dirs.run(&["users", "disable", "local-admin"]);
    assert_eq!(disabled.code(), 0, "{disabled:?}");
    let (status, body) = json_of(
        local
            .get("http://localhost/api/v1/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

async fn wait_for_audit(client: &reqwest::Client, action: &str) -> Value {
    for _ in 0..50 {
        let log: Value = client
            .get("http://localhost/api/v1/audit")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(entry) = log["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["action"] == action)
        {
            return entry.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `{action}` in the audit log");
}

#[tokio::test]
async fn the_cli_uses_the_socket_without_a_key_and_tcp_with_one() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    // No key and no port: the socket (the configured TCP port is not the daemon's).
    let out = dirs.run(&["status"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("unix:"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("pid {}", app.pid())));
    // A port on the command line means TCP, where no key means 401, and the CLI says
    // why it did not use the socket.
    let port = app.url.rsplit(':').next().unwrap().to_string();
    let tcp = dirs.run(&["--port", &port, "status"]);
    assert_eq!(tcp.code(), 1, "{tcp:?}");
    assert!(tcp.stderr.contains("401"), "{}", tcp.stderr);
    assert!(tcp.stderr.contains("--port"), "{}", tcp.stderr);
    // A stale socket (the daemon was killed): the CLI falls back to TCP (given in the
    // environment, which is not "named on the command line"; port 1 has no daemon).
    drop(app);
    let gone = dirs
        .command()
        .env("APPLIANCE_SERVER_PORT", "1")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(5), "{gone:?}");
}

#[tokio::test]
async fn the_socket_file_is_removed_at_shutdown_and_a_stale_one_replaced() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let path = socket(&dirs);
    // Killed: the file stays behind, nobody answers on it.
    drop(app);
    assert!(path.exists());
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
    let app = TestApp::spawn(&dirs);
    let (status, _) = json_of(
        over_socket(&dirs)
            .get("http://localhost/api/v1/auth/me")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    app.signal("TERM");
    let (exit, stderr) = app.wait(Duration::from_secs(15));
    assert!(exit.success(), "{stderr}");
    assert!(!path.exists(), "the socket is removed at shutdown");

    // Something that is not a socket is never removed: the daemon refuses to start.
    std::fs::write(&path, "mine").unwrap();
    let mut serve = dirs
        .command()
        .args(["--port", "0", "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(Duration::from_secs(20), || {
        serve.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = serve.kill();
    }
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited && !out.status.success(), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
}

#[tokio::test]
async fn connections_on_the_socket_are_capped_per_unix_user() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.max_connections_per_address=3"]);
    let path = socket(&dirs);
    let held: Vec<_> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(refused.is_empty(), "a fourth connection was served");
    // TCP clients are counted apart.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    drop(held);
    assert!(wait_for(Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(socket(&dirs)).is_ok()
    }));
}
