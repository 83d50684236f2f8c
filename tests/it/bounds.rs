//! Resources stay bounded under a flood: public routes per address, readiness checks,
//! usage reads, and the tables that only ever grew (sessions, the audit log).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Dirs, TestApp, get_json};

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn routes_without_credentials_are_limited_per_address() {
    let dirs = Dirs::new();
    let app = TestApp::spawn_with(&dirs, &["--set", "limits.public_requests_per_minute=20"]);
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = app
            .anonymous
            .get(format!("{}/api/version", app.url))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // Authenticated routes are limited per user instead, not by this.
    assert_eq!(
        app.get("/api/v1/auth/me").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_flood_of_readiness_checks_touches_the_disk_once_per_interval() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let began = Instant::now();
    for _ in 0..100 {
        app.anonymous
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap();
    }
    let seconds = began.elapsed().as_secs_f64();
    let pings = metric(
        &metrics(&app).await,
        "appliance_db_query_duration_seconds_count{op=\"ping\"}",
    );
    // One real check per two seconds at most (plus the first).
    assert!(
        pings <= (seconds / 2.0).ceil() + 1.0,
        "{pings} checks in {seconds:.1} s"
    );
}

#[tokio::test]
async fn reading_usage_never_writes() {
    let dirs = Dirs::new();
    let app = TestApp::spawn(&dirs);
    let writes = |text: &str| {
        metric(
            text,
            "appliance_db_query_duration_seconds_count{op=\"add_usage\"}",
        )
    };
    let before = writes(&metrics(&app).await);
    let began = Instant::now();
    for _ in 0..50 {
        let usage: Value = get_json(&app, "/api/v1/usage").await;
        assert!(usage["data"].is_array());
    }
    let flushes = (began.elapsed().as_secs_f64() / 2.0).ceil() + 1.0;
    let after = writes(&metrics(&app).await);
    assert!(after - before <= flushes, "{} usage writes", after - before);
    // What was counted but not written yet is still shown.
    let usage: Value = get_json(&app, "/api/v1/usage").await;
    assert!(
        usage["data"][0]["requests"].as_i64().unwrap() >= 50,
        "{usage}"
    );
}

#[tokio::test]
async fn expired_sessions_and_old_audit_entries_are_deleted() {
    let dirs = Dirs::new();
    // A database with an expired session and audit entries from long ago.
    dirs.admin_key();
    let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) \
         SELECT 'old', id, 'x', '2020-01-01T00:00:00.000Z', '2020-01-08T00:00:00.000Z', '2020-01-01T00:00:00.000Z' FROM users LIMIT 1",
        [],
    )
    .unwrap();
    for i in 0..2500 {
        db.execute(
            "INSERT INTO audit_log (at, action, success) VALUES (?1, 'login', 0)",
            [format!("2020-01-01T00:00:{:02}.000Z", i % 60)],
        )
        .unwrap();
    }
    drop(db);
    let app = TestApp::spawn_with(&dirs, &["--set", "auth.audit_retention_days=30"]);
    let count = |sql: &str| -> i64 {
        let db = rusqlite::Connection::open(dirs.data().join("appliance.db")).unwrap();
        db.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (count("SELECT count(*) FROM sessions") > 0
            || count("SELECT count(*) FROM audit_log WHERE at < '2021-01-01'") > 0)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("SELECT count(*) FROM sessions"), 0);
    assert_eq!(
        count("SELECT count(*) FROM audit_log WHERE at < '2021-01-01'"),
        0
    );
    // Recent entries stay.
    assert!(count("SELECT count(*) FROM audit_log") > 0);
    drop(app);
}
