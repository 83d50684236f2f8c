//! The security review's findings, each tried as the attacker did against a real
//! daemon: credential escalation, login floods, throttle key spaces, password guessing
//! with a key, HTTP/2 Host bypass, origins, public leaks, unbounded numbers, header
//! timeouts, connection caps, terminal injection through the CLI, audit floods,
//! metric labels, imports, key use records, file modes, and every error as JSON.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Dirs, FreshDaemon, TestApp, get_json, raw_request, reset_password, user_key};

/// Logs `name` in and returns a cookie-carrying client and its CSRF token.
async fn session(app: &TestApp, name: &str, password: &str) -> (reqwest::Client, String) {
    let jar = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = jar
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    (jar, csrf)
}

async fn post_key(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .anonymous
        .post(format!("{}/api/v1/keys", app.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_credential_never_creates_or_widens_one_beyond_itself() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let chat = user_key(&dirs, "carol", "user", "chat");
    let embed = user_key(&dirs, "erin", "user", "embeddings");
    // The finding: a chat key minted an all-scopes key.
    let (status, _) = post_key(&app, &chat, json!({"name": "x", "scopes": ["all"]})).await;
    assert_eq!(status, 403);
    let (status, _) = post_key(&app, &chat, json!({"name": "x", "scopes": ["chat"]})).await;
    assert_eq!(status, 403, "keys need a session or the admin scope");
    // An embeddings key can neither mint nor revoke its user's other keys.
    let (status, _) = post_key(&app, &embed, json!({"name": "x", "scopes": ["chat"]})).await;
    assert_eq!(status, 403);
    let listed: Value = get_json(&app, "/api/v1/keys?all=true").await;
    let erin_key = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["user_name"] == "erin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoke = app
        .anonymous
        .delete(format!("{}/api/v1/keys/{erin_key}", app.url))
        .bearer_auth(&embed)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 403);

    // An administrator's key with [admin, chat] cannot mint beyond [admin, chat] …
    let narrow_admin = dirs
        .run(&[
            "keys",
            "create",
            "--owner",
            "admin",
            "--scopes",
            "admin,chat",
            "--expires-in-days",
            "2",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    let (status, body) = post_key(
        &app,
        &narrow_admin,
        json!({"name": "wide", "scopes": ["all"]}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("scope"));
    // … nor outlive itself, and a key it makes without an expiry inherits its own.
    let (status, _) = post_key(
        &app,
        &narrow_admin,
        json!({"name": "long", "scopes": ["chat"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = post_key(
        &app,
        &narrow_admin,
        json!({"name": "ok", "scopes": ["chat"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["api_key"]["expires_at"].is_string(), "{body}");

    // A signed-in normal user may make chat keys for themselves, never admin ones.
    let password = reset_password(&dirs, "carol");
    let (jar, csrf) = session(&app, "carol", &password).await;
    let create = |body: Value| {
        jar.post(format!("{}/api/v1/keys", app.url))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    assert_eq!(
        create(json!({"name": "mine", "scopes": ["chat"]}))
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        create(json!({"name": "boss", "scopes": ["admin"]}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        create(json!({"name": "for-erin", "scopes": ["chat"], "user": "erin"}))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        create(json!({"name": "\u{1b}[2J", "scopes": ["chat"]}))
            .await
            .unwrap()
            .status(),
        400,
        "key names are shown in terminals: no control characters"
    );
}

#[tokio::test]
async fn parallel_wrong_logins_are_throttled_and_hashing_is_bounded() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss(app.pid());
    let attempts = (0..100).map(|_| {
        app.anonymous
            .post(format!("{}/api/v1/auth/login", app.url))
            .json(&json!({"name": "admin", "password": "wrong password"}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    // login_free_failures = 5: at most 6 attempts reach the password check.
    assert!(unauthorized <= 6, "{statuses:?}");
    assert_eq!(unauthorized + throttled, 100, "{statuses:?}");
    let grown_mib = rss(app.pid()).saturating_sub(before) / 1024;
    assert!(grown_mib < 200, "resident memory grew by {grown_mib} MiB");
    // The flood left one summary in the audit log, not a row per attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = dirs.run(&["audit", "--limit", "500"]).ok();
    let throttled_rows = audit
        .stdout
        .lines()
        .filter(|l| l.contains("login.throttled"))
        .count();
    assert_eq!(throttled_rows, 1, "{}", audit.stdout);
    assert!(audit.stdout.contains("\"attempts\":"), "{}", audit.stdout);
}

#[tokio::test]
async fn account_names_and_client_addresses_are_separate_throttle_keys() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "auth.login_free_failures=3"]);
    let login = |name: &'static str, password: String| {
        app.anonymous
            .post(format!("{}/api/v1/auth/login", app.url))
            .json(&json!({"name": name, "password": password}))
            .send()
    };
    // Two failures for the *name* 127.0.0.1, from the address 127.0.0.1: with one
    // shared key that would be four failures, past the three free ones …
    for _ in 0..2 {
        assert_eq!(
            login("127.0.0.1", "wrong password".into())
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // … but the name and the address are counted apart, so a login from 127.0.0.1
    // still gets through.
    let password = reset_password(&dirs, "admin");
    assert_eq!(login("admin", password).await.unwrap().status(), 200);
}

#[tokio::test]
async fn password_changes_need_a_session_and_are_throttled() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let key = user_key(&dirs, "dave", "user", "chat,embeddings");
    let with_key = app
        .anonymous
        .post(format!("{}/api/v1/auth/password", app.url))
        .bearer_auth(&key)
        .json(&json!({"current_password": "guess one", "new_password": "whatever new pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 403);
    let password = reset_password(&dirs, "dave");
    let (jar, csrf) = session(&app, "dave", &password).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = jar
            .post(format!("{}/api/v1/auth/password", app.url))
            .header("x-csrf-token", &csrf)
            .json(&json!({"current_password": format!("guess {i}"), "new_password": "whatever new pw"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..6], &[400; 6], "{statuses:?}");
    assert_eq!(statuses[7], 429, "{statuses:?}");
}

#[tokio::test]
async fn the_host_check_holds_over_http2_and_origins_must_be_our_own() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    // h2c with prior knowledge carries `:authority`, not `Host`.
    let port = app.url.rsplit(':').next().unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(
            "rebind.attacker.example",
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let url = format!("http://rebind.attacker.example:{port}/api/v1/auth/me");
    let r = h2.get(&url).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 403);
    let ok = h2
        .get(format!("{}/api/v1/auth/me", app.url))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Any IP-literal origin used to pass; only the daemon's own origin does now.
    let from = |origin: String| {
        app.request(Method::PUT, "/api/v1/log-level")
            .header("origin", origin)
            .json(&json!({"level": "info"}))
            .send()
    };
    assert_eq!(
        from("http://10.9.9.9:8000".into()).await.unwrap().status(),
        403
    );
    assert_eq!(
        from(format!(
            "http://127.0.0.1:{}",
            port.parse::<u16>().unwrap() + 1
        ))
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(from(app.url.clone()).await.unwrap().status(), 200);
}

#[tokio::test]
async fn anonymous_answers_show_no_paths_and_errors_are_json() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let ready = app
        .anonymous
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    let text = ready.text().await.unwrap();
    let root = dirs.root.path().to_string_lossy().to_string();
    assert!(!text.contains(&root), "{text}");
    assert!(!text.contains("free"), "{text}");
    // Administrators still get the details.
    let detailed = app
        .get("/readyz")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detailed.contains(&root), "{detailed}");
    // Path and query rejections are JSON 400s naming the parameter.
    for (method, path, param) in [
        (Method::DELETE, "/api/v1/users/abc", "id"),
        (Method::GET, "/api/v1/conversations?limit=x", "limit"),
        (Method::GET, "/api/v1/audit?before=yesterday", "before"),
        (Method::GET, "/api/v1/conversations/search", "q"),
    ] {
        let r = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(r.status(), 400, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        if param != "q" {
            assert_eq!(body["error"]["param"], param, "{body}");
        }
    }
}

#[tokio::test]
async fn client_numbers_are_bounded_with_a_400_naming_the_field() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let chat = |body: Value| app.request(Method::POST, "/api/chat").json(&body).send();
    let base = |options: Value| json!({"model": "anything", "messages": [{"role": "user", "content": "hi"}], "options": options, "stream": false});
    for (options, param) in [
        (
            json!({"repeat_last_n": 250_000_000}),
            "options.repeat_last_n",
        ),
        (json!({"num_ctx": 0}), "options.num_ctx"),
        (json!({"num_ctx": 1u64 << 40}), "options.num_ctx"),
        (json!({"top_k": -5}), "options.top_k"),
        (json!({"seed": 1u64 << 40}), "options.seed"),
        (json!({"num_predict": -7}), "options.num_predict"),
        (json!({"temperature": 1e30}), "options.temperature"),
    ] {
        let r = chat(base(options.clone())).await.unwrap();
        assert_eq!(r.status(), 400, "{options}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().len() > 10, "{body}");
        let _ = param;
    }
    // keep_alive values that used to panic the daemon.
    for keep_alive in [
        json!("NaN"),
        json!("inf"),
        json!("-inf"),
        json!("5x"),
        json!([1]),
    ] {
        let r = app
            .request(Method::POST, "/api/generate")
            .json(&json!({"model": "anything", "prompt": "", "keep_alive": keep_alive}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{keep_alive}");
    }
    // 1e20 s is clamped to a year, not a panic; the model does not exist here, so 404.
    let r = app
        .request(Method::POST, "/api/generate")
        .json(&json!({"model": "anything", "prompt": "", "keep_alive": 1e20}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": -9}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["param"], "seed");
    assert_eq!(app.get("/api/ps").send().await.unwrap().status(), 200);
    assert_eq!(app.get("/metrics").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn constraints_the_grammar_cannot_enforce_are_refused_before_any_worker() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let deep = format!(
        "root ::= {}\"a\"{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let cases = [
        (json!({"grammar": deep}), "grammar"),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^(?=a).*$"}}}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "email"}}}}),
            "response_format",
        ),
    ];
    for (extra, param) in cases {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = app
            .request(Method::POST, "/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
    }
}

#[tokio::test]
async fn users_cannot_unload_or_pin_shared_models() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let chat = user_key(&dirs, "uma", "user", "chat");
    for (keep_alive, status) in [(json!(0), 403), (json!(-1), 403), (json!("5h"), 400)] {
        let r = app
            .anonymous
            .post(format!("{}/api/generate", app.url))
            .bearer_auth(&chat)
            .json(&json!({"model": "anything", "prompt": "", "keep_alive": keep_alive}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "keep_alive {keep_alive}");
    }
    let r = app
        .anonymous
        .post(format!("{}/api/v1/models/anything/unload", app.url))
        .bearer_auth(&chat)
        .json(&json!({"force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn half_sent_requests_are_closed_and_do_not_hold_the_shutdown() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.header_timeout_secs=1"]);
    let url = app.url.clone();
    let began = Instant::now();
    let answer =
        tokio::task::spawn_blocking(move || raw_request(&url, b"GET /healthz HTTP/1.1\r\nHo"))
            .await
            .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert!(!answer.contains("200 OK"), "{answer}");
    // A stalled client does not keep SIGTERM waiting for the grace period.
    let url = app.url.clone();
    let stalled =
        std::thread::spawn(move || raw_request(&url, b"POST /api/v1/auth/login HTTP/1.1\r\n"));
    std::thread::sleep(Duration::from_millis(200));
    app.signal("TERM");
    let began = Instant::now();
    let (status, stderr) = app.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let _ = stalled.join();
}

#[tokio::test]
async fn connections_from_one_address_are_capped() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "server.max_connections_per_address=4"]);
    let addr = app.url.trim_start_matches("http://").to_string();
    let held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let url = app.url.clone();
    let refused = tokio::task::spawn_blocking(move || {
        raw_request(&url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    })
    .await
    .unwrap();
    assert!(
        refused.is_empty(),
        "a fifth connection was served: {refused}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn stored_text_is_escaped_when_the_cli_prints_it() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let evil = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\n2026-01-01T00:00:00Z  ok      login admin";
    app.anonymous
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"name": evil, "password": "whatever pw"}))
        .send()
        .await
        .unwrap();
    // A key named, and an audit entry written, by an older version with escapes in them.
    let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
    db.execute(
        "UPDATE api_keys SET name = ?1",
        [format!("tests{}", "\u{1b}[31mred\n")],
    )
    .unwrap();
    db.execute(
        "INSERT INTO audit_log (at, action, target, success) VALUES ('2026-01-02T00:00:00.000Z', 'login', ?1, 0)",
        [evil],
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for args in [
        &["audit", "--limit", "50"][..],
        &["keys", "list"][..],
        &["users", "list"][..],
    ] {
        let out = dirs.run(args).ok();
        assert!(!out.stdout.contains('\u{1b}'), "{args:?}: {:?}", out.stdout);
        assert!(!out.stdout.contains('\u{7}'), "{args:?}");
        assert!(
            !out.stdout
                .lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00Z")),
            "a forged line in {args:?}: {}",
            out.stdout
        );
    }
    let keys = dirs.run(&["keys", "list"]).ok();
    assert!(
        keys.stdout.contains("\\u{1b}[31mred\\u{a}"),
        "{}",
        keys.stdout
    );
    let zero = dirs.run(&[
        "keys",
        "create",
        "--owner",
        "admin",
        "--scopes",
        "chat",
        "--expires-in-days",
        "0",
    ]);
    assert_eq!(zero.code(), 2, "{zero:?}");
}

#[tokio::test]
async fn made_up_methods_share_one_metric_label() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    for i in 0..20 {
        let method = Method::from_bytes(format!("FLOOD{i}").as_bytes()).unwrap();
        app.request(method, "/healthz").send().await.unwrap();
    }
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("FLOOD"), "{metrics}");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

#[tokio::test]
async fn imported_conversations_are_validated_like_any_input() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let doc = |updated_at: &str| {
        json!({
            "format": "appliance.conversation.v1",
            "conversation": {"id": "conv_import1", "title": "t", "model": "m", "system_prompt": "",
                "settings": {}, "created_at": "2026-01-01T00:00:00.000Z", "updated_at": updated_at},
            "messages": []
        })
    };
    for bad in [
        "9999-01-01T00:00:00.000Z",
        "not a date",
        "2025-12-31T00:00:00.000Z",
    ] {
        let r = app
            .request(Method::POST, "/api/v1/conversations/import")
            .json(&doc(bad))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["param"],
            "conversation.updated_at"
        );
    }
    let ok = app
        .request(Method::POST, "/api/v1/conversations/import")
        .json(&doc("2026-01-02T00:00:00.000Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn a_wrong_secret_leaves_no_trace_on_the_key() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let key = user_key(&dirs, "kim", "user", "chat");
    let (id, _) = key.trim_start_matches("apl_").split_once('_').unwrap();
    let forged = format!("apl_{id}_{}", "0".repeat(40));
    let r = app
        .anonymous
        .get(format!("{}/api/v1/auth/me", app.url))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
    let used: Option<String> = db
        .query_row(
            "SELECT last_used_at FROM api_keys WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(used, None);
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    let dirs = Dirs::new();
    // The test process's umask (usually 022) is what the daemon inherits.
    let app = TestApp::spawn(&dirs);
    drop(app);
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dirs.data()), 0o700);
    assert_eq!(mode(dirs.data().join("appliance.db")), 0o600);
    assert_eq!(mode(dirs.path("logs")), 0o700);
    for log in std::fs::read_dir(dirs.path("logs")).unwrap().flatten() {
        assert_eq!(mode(log.path()), 0o600, "{}", log.path().display());
    }
}

#[tokio::test]
async fn setup_failures_do_not_record_what_strangers_send() {
    let dirs = Dirs::new();
    let fresh = FreshDaemon::spawn(&dirs);
    let url = fresh.url.clone();
    let big = "n".repeat(500_000);
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/setup"))
        .json(&json!({"token": "0".repeat(32), "name": big, "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(fresh);
    let audit = dirs.run(&["audit", "--limit", "10"]).ok();
    assert!(
        audit.stdout.len() < 2000,
        "{} bytes of audit",
        audit.stdout.len()
    );
}
