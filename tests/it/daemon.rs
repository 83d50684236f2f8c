//! The daemon's lifecycle: health, readiness, metrics, request ids, shutdown, the lock.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Dirs, TestApp, get_json, non_empty, raw_request, wait_for};

#[tokio::test]
async fn health_ready_metrics_and_request_ids() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn(&dirs);

    let health = app.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));

    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "database",
            "backup",
            "gpu",
            "disk_space",
            "data_dir",
            "default_model"
        ]
    );

    // A client's request id is echoed and appears in the request's log lines.
    let echoed = app
        .get("/api/v1/status")
        .header("x-request-id", "test-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "test-req-42");
    let status: serde_json::Value = echoed.json().await.unwrap();
    assert_eq!(status["pid"], app.pid());
    assert_eq!(
        status["paths"]["data_dir"],
        dirs.data().display().to_string()
    );
    // A hostile id (control characters / too long) is replaced, not echoed.
    let replaced = app
        .get("/healthz")
        .header("x-request-id", "x".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.headers()["x-request-id"].len(), 32);

    let metrics = app.get("/metrics").send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text().await.unwrap();
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "appliance_uptime_seconds",
        "appliance_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"} 1",
        "appliance_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2",
        "appliance_db_query_duration_seconds_count{op=\"ping\"} 1",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    promtool_check(&text);

    app.signal("TERM");
    let (status, stderr) = app.wait(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(
        stderr.contains("\"request_id\":\"test-req-42\""),
        "request id not in logs:\n{stderr}"
    );
    // The rotated log file got the same lines.
    let logs: Vec<_> = std::fs::read_dir(dirs.path("logs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(non_empty(&logs[0].path()));
}

/// `promtool check metrics` must accept the exposition (Debian's prometheus package).
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required for this test: apt-get install prometheus");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_releases_the_lock() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.shutdown_grace_secs=5"]);
    // Hold a connection with a slow request body in flight while SIGTERM arrives.
    let url = format!("{}/api/v1/log-level", app.url);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let in_flight = tokio::spawn(
        app.http
            .clone()
            .put(url)
            .header("content-type", "application/json")
            .body(body)
            .send(),
    );
    tx.send(Ok(b"{\"level\":".to_vec())).await.unwrap();
    // The request is in the handler (the metrics request counts itself too) …
    wait_for_in_flight(&app, 2).await;
    app.signal("TERM");
    // … and the daemon has stopped accepting before the body completes.
    wait_until_closed(&app.url).await;
    tx.send(Ok(b"\"debug\"}".to_vec())).await.unwrap();
    drop(tx);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the in-flight request was cut off");

    let started = Instant::now();
    let (status, stderr) = app.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The lock is free: a new daemon starts on the same data dir.
    let again = TestApp::spawn(&dirs);
    assert_eq!(again.get("/healthz").send().await.unwrap().status(), 200);
}

/// Waits until the daemon reports `n` HTTP requests in flight (explicit
/// synchronisation instead of a sleep that hopes the request got there).
async fn wait_for_in_flight(app: &TestApp, n: i64) {
    let line = format!("appliance_http_requests_in_flight {n}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let metrics = reqwest::Client::new()
            .get(format!("{}/metrics", app.url))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never saw {line}");
}

/// Waits until the daemon's listener refuses new connections.
async fn wait_until_closed(url: &str) {
    let addr = url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the listener at {addr} stayed open");
}

/// A request body that arrives in pieces, fed by a channel.
fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Vec<u8>, std::io::Error>> {
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tokio::test]
async fn grace_period_cuts_off_requests_that_never_finish() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.shutdown_grace_secs=1"]);
    let url = format!("{}/api/v1/log-level", app.url);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let _in_flight = tokio::spawn(
        app.http
            .clone()
            .put(url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(tokio_stream(rx)))
            .send(),
    );
    tx.send(Ok(b"{".to_vec())).await.unwrap();
    wait_for_in_flight(&app, 2).await;
    let started = Instant::now();
    app.signal("TERM");
    let (status, stderr) = app.wait(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "a cut-off shutdown is reported:\n{stderr}"
    );
    assert!(
        stderr.contains("did not finish within the grace period"),
        "{stderr}"
    );
    drop(tx);
}

#[tokio::test]
async fn second_instance_fails_fast_naming_the_pid_and_kill_9_never_blocks_a_restart() {
    let dirs = Dirs::new();
    let first = TestApp::spawn(&dirs);

    let started = Instant::now();
    let second = dirs.run(&["--port", "0", "serve"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(second.code(), 4, "{second:?}");
    assert!(
        second
            .stderr
            .contains(&format!("held by PID {}", first.pid())),
        "{}",
        second.stderr
    );

    first.signal("KILL");
    let (status, _) = first.wait(Duration::from_secs(5));
    assert!(!status.success());
    assert!(
        dirs.data().join("appliance.lock").exists(),
        "the stale file stays"
    );

    let restarted = TestApp::spawn(&dirs);
    assert_eq!(
        restarted.get("/healthz").send().await.unwrap().status(),
        200
    );
    let status: serde_json::Value = restarted
        .get("/api/v1/status")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["previous_run_unclean"]["pid"].is_number(),
        "the kill -9 run is reported as unclean: {status}"
    );
}

#[tokio::test]
async fn readyz_is_503_with_the_failing_check_named() {
    let dirs = Dirs::with_models();
    // More free disk than any test machine has: the disk check must fail.
    let app = TestApp::spawn_with(&dirs, &["--set", "health.min_free_disk_mb=1000000000"]);
    let response = app.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failing"][0]["name"], "disk_space");
    assert!(body["failing"][0]["hint"].is_string());
    // Liveness is unaffected.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

/// On a machine without a GPU (this one), every view of the GPU says so plainly and
/// nothing fails: the API, `/metrics`, readiness, `status`, the start-up plan and
/// `appliance gpu` (exit 0), with the daemon and without it.
#[tokio::test]
async fn without_a_gpu_every_view_says_so_and_nothing_fails() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn(&dirs);
    let port = app.url.rsplit(':').next().unwrap().to_string();
    let report = get_json(&app, "/api/v1/gpu").await;
    assert_eq!(report["state"], "unavailable");
    assert!(non_empty_str(&report["reason"]), "{report}");
    assert_eq!(report["devices"], serde_json::json!([]));
    assert_eq!(report["budget"]["available_bytes"], serde_json::Value::Null);
    assert_eq!(report["budget"]["committed_bytes"], 0);
    assert_eq!(report["queue"], serde_json::json!([]));
    // The plan is made in the background right after start.
    let mut plan = serde_json::Value::Null;
    for _ in 0..100 {
        plan = get_json(&app, "/api/v1/gpu").await["plan"].clone();
        if !plan.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let models = plan["models"].as_array().expect("a plan");
    assert_eq!(models[0]["name"], "SmolLM2-135M-Instruct-Q4_1");
    assert_eq!(models[0]["total_layers"], 31);
    assert!(
        models
            .iter()
            .all(|m| m["placement"] == "cpu" && m["gpu_layers"] == 0)
    );
    assert!(plan["notes"][0].as_str().unwrap().starts_with("no GPU"));
    // A user who is not an administrator may not read it.
    let user = crate::support::user_key(&dirs, "gpu-user", "user", "chat");
    let refused = app
        .anonymous
        .get(format!("{}/api/v1/gpu", app.url))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let text = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "appliance_gpu_available 0",
        "appliance_scheduler_queue_depth 0",
        "appliance_vram_committed_bytes 0",
        "appliance_scheduler_evictions_total{reason=\"vram\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(!text.contains("appliance_gpu_memory_total_bytes{"));
    promtool_check(&text);

    let ready = get_json(&app, "/readyz").await;
    assert_eq!(ready["status"], "ready");
    let gpu = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gpu")
        .cloned();
    assert_eq!(gpu.unwrap()["status"], "warn");

    let status = dirs
        .run(&["--port", &port, "--api-key", &app.key, "status"])
        .ok();
    assert!(
        status.stdout.contains("gpu          none ("),
        "{}",
        status.stdout
    );
    let table = dirs
        .run(&["--port", &port, "--api-key", &app.key, "gpu"])
        .ok();
    assert!(table.stdout.starts_with("no GPU: "), "{}", table.stdout);
    assert!(table.stdout.contains("models run on the CPU"));
    assert!(
        table.stdout.contains("SmolLM2-135M-Instruct-Q4_1"),
        "{}",
        table.stdout
    );
    let json = dirs
        .run(&["--port", &port, "--api-key", &app.key, "gpu", "--json"])
        .ok();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["state"], "unavailable");

    drop(app);
    assert!(wait_for(Duration::from_secs(5), || {
        dirs.run(&["--port", &port, "status"]).code() == 5
    }));
    // Without the daemon, the driver alone answers (still exit 0).
    let alone = dirs.run(&["--port", &port, "gpu"]).ok();
    assert!(alone.stdout.starts_with("no GPU: "), "{}", alone.stdout);
    assert!(
        alone.stdout.contains("daemon not reachable"),
        "{}",
        alone.stdout
    );
}

fn non_empty_str(value: &serde_json::Value) -> bool {
    value.as_str().is_some_and(|s| !s.is_empty())
}

#[tokio::test]
async fn status_command_reports_the_running_daemon() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn(&dirs);
    let port = app.url.rsplit(':').next().unwrap().to_string();
    let out = dirs.run(&["--port", &port, "--api-key", &app.key, "status"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("pid {}", app.pid())),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ready"), "{}", out.stdout);
    assert!(out.stdout.contains(&dirs.data().display().to_string()));
    assert!(out.stdout.contains("none loaded"));

    let json = dirs.run(&["--port", &port, "--api-key", &app.key, "status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["pid"], app.pid());

    drop(app);
    assert!(wait_for(Duration::from_secs(5), || {
        dirs.run(&["--port", &port, "status"]).code() == 5
    }));
    let down = dirs.run(&["--port", &port, "status"]);
    assert!(
        down.stderr.contains("no appliance is answering"),
        "{}",
        down.stderr
    );
}

#[tokio::test]
async fn embedded_ui_has_types_etags_and_immutable_fingerprinted_assets() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let page = app.get("/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let etag = page.headers()["etag"].clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Appliance</title>"));
    assert!(
        !html.contains("<script>"),
        "no inline scripts under the CSP"
    );

    let again = app
        .get("/")
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // The build's fingerprinted script and stylesheet are cached forever.
    let asset = |ext: &str| {
        html.split('"')
            .find(|part| part.starts_with("/assets/") && part.ends_with(ext))
            .unwrap_or_else(|| panic!("no {ext} in {html}"))
            .to_string()
    };
    let js = app.get(&asset(".js")).send().await.unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let css = app.get(&asset(".css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn readyz_fails_without_the_default_model() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let response = app.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["failing"][0]["name"], "default_model");
    assert!(
        body["failing"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("scripts/fetch-models")
    );
}

#[tokio::test]
async fn tells_systemd_ready_then_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dirs = Dirs::new();
    let socket_path = dirs.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let app = TestApp::spawn_env(
        &dirs,
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            // WatchdogSec=0.4 as systemd passes it.
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).unwrap();
        std::str::from_utf8(&buf[..n]).unwrap().trim().to_string()
    };
    assert_eq!(next(), "READY=1");
    // READY=1 comes once the daemon answers.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
    // The watchdog is fed at half its interval while the daemon works.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    app.signal("TERM");
    let mut last = next();
    while last == "WATCHDOG=1" {
        last = next();
    }
    assert_eq!(last, "STOPPING=1");
    let (status, _) = app.wait(Duration::from_secs(10));
    assert!(status.success());
}

#[tokio::test]
async fn system_samples_accumulate_for_the_admin_graphs() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let mut samples = Vec::new();
    for _ in 0..50 {
        let body: serde_json::Value = get_json(&app, "/api/v1/system").await;
        samples = body["samples"].as_array().unwrap().clone();
        if samples.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples.len() >= 2, "{samples:?}");
    let last = &samples[samples.len() - 1];
    assert!(last["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(last["disk_total_bytes"].as_u64().unwrap() > 0);
    assert!(last["t"].as_i64().unwrap() > samples[0]["t"].as_i64().unwrap());
    assert!(last["gpus"].is_array());
}

#[tokio::test]
async fn a_development_ui_dir_is_served_without_escaping_it() {
    let dirs = Dirs::new();
    let ui = dirs.path("ui");
    std::fs::create_dir_all(ui.join("assets")).unwrap();
    std::fs::write(
        ui.join("index.html"),
        "<!doctype html><title>dev ui</title>",
    )
    .unwrap();
    std::fs::write(ui.join("assets/app.js"), "console.log(1)").unwrap();
    std::fs::write(dirs.path("secret.txt"), "TOP-SECRET-CONTENT-1234").unwrap();
    let app = TestApp::spawn_with(
        &dirs,
        &["--set", &format!("server.ui_dir={}", ui.display())],
    );
    let page = app.get("/").send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html");
    assert!(page.text().await.unwrap().contains("dev ui"));
    let js = app.get("/assets/app.js").send().await.unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    // Sent byte for byte: an HTTP client would normalise `..` away before sending.
    for sneaky in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "//etc/passwd",
        "/..%2fsecret.txt",
    ] {
        let request = format!(
            "GET {sneaky} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            app.key
        );
        let url = app.url.clone();
        let answer = tokio::task::spawn_blocking(move || raw_request(&url, request.as_bytes()))
            .await
            .unwrap();
        assert!(!answer.is_empty(), "{sneaky}: no answer");
        assert!(
            !answer.contains("TOP-SECRET-CONTENT"),
            "{sneaky} escaped the UI dir:\n{answer}"
        );
        assert!(
            !answer.contains("root:"),
            "{sneaky} escaped the UI dir:\n{answer}"
        );
        assert!(!answer.starts_with("HTTP/1.1 200"), "{sneaky}:\n{answer}");
    }
}

#[tokio::test]
async fn a_reply_cut_off_by_shutdown_is_still_stored_labelled() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn_with(
        &dirs,
        &[
            "--set",
            "server.shutdown_grace_secs=1",
            "--set",
            "engine.threads=2",
        ],
    );
    let conversation = app
        .request(reqwest::Method::POST, "/api/v1/conversations")
        .json(&serde_json::json!({"title": "long"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reply = app
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/conversations/{conversation}/messages"),
        )
        .json(&serde_json::json!({"content": "Write a long story about a dragon.", "settings": {"max_tokens": 3000, "temperature": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    // Some of the reply has streamed …
    let mut seen = String::new();
    while seen.matches("\"token\"").count() < 5 {
        seen.push_str(&String::from_utf8_lossy(
            &reply.chunk().await.unwrap().unwrap(),
        ));
    }
    // … when the daemon is told to stop; the reply outlives the grace period.
    app.signal("TERM");
    let (status, stderr) = app.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
    let rows: Vec<(String, String, String)> = db
        .prepare(
            "SELECT role, status, content FROM messages WHERE conversation_id = ?1 ORDER BY id",
        )
        .unwrap()
        .query_map([&conversation], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}\n{stderr}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("user", "complete")
    );
    assert_eq!(rows[1].0, "assistant");
    assert_ne!(rows[1].1, "complete", "{rows:?}");
    assert!(!rows[1].2.is_empty(), "the partial reply was kept");
}
