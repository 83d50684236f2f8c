//! Deliveries to a real local HTTP receiver: the shapes, retries, the repeat interval,
//! and the audit that never holds the URL.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use parking_lot::Mutex;

use super::*;
use crate::store::StoreOptions;

/// A receiver answering each POST with the next status of `statuses` (then 200).
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(statuses)));
    let (seen, queue2) = (got.clone(), queue.clone());
    let app = axum::Router::new().route(
        "/hook/{secret}",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (seen, queue) = (seen.clone(), queue2.clone());
            async move {
                seen.lock().push(body);
                let status = queue.lock().pop_front().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("a.db"),
        StoreOptions::new(Duration::from_secs(5), 1),
    )
    .unwrap();
    (dir, store)
}

async fn audit_entries(store: &Store, n: usize) -> Vec<AuditEntry> {
    for _ in 0..100 {
        let entries = store.audit_log(50, None).await.unwrap();
        let sent: Vec<AuditEntry> = entries
            .into_iter()
            .filter(|e| e.action.starts_with("notification."))
            .collect();
        if sent.len() >= n {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no audit of {n} deliveries");
}

#[test]
fn targets_parse_by_kind_and_show_only_their_host() {
    let t = Target::parse("slack:https://hooks.slack.com/services/T/B/secret").unwrap();
    assert_eq!((t.kind, t.host.as_str()), ("slack", "hooks.slack.com"));
    assert_eq!(t.label(), "slack hooks.slack.com");
    assert!(!t.label().contains("secret"));
    assert_eq!(Target::parse("https://example.org/x").unwrap().kind, "json");
    assert_eq!(
        Target::parse("matrix:http://m.example/hook").unwrap().kind,
        "matrix"
    );
    assert!(Target::parse("ftp://x").is_none());
    assert!(Target::parse("slack:not a url").is_none());
}

#[tokio::test]
async fn deliveries_take_each_shape_retry_and_are_audited_without_the_url() {
    let (url, got) = receiver(vec![503]).await;
    let (_dir, store) = store().await;
    let targets = vec![
        format!("slack:{url}/hook/s3cret"),
        format!("json:{url}/hook/other"),
        format!("matrix:{url}/hook/third"),
    ];
    let notifier = Notifier::new(&targets, None, Duration::from_secs(3600), store.clone())
        .with_backoff(vec![Duration::from_millis(10), Duration::from_millis(10)]);
    let mut live = notifier.subscribe();
    let queued = notifier.notify(
        "disk_low",
        "data",
        Severity::Warning,
        "Disk space low",
        "9 MiB <free>",
    );
    assert_eq!(queued, 3);
    assert_eq!(live.recv().await.unwrap().event, "disk_low");
    let entries = audit_entries(&store, 3).await;
    assert!(entries.iter().all(|e| e.success), "{entries:?}");
    // One of them was answered 503 first and sent again.
    assert!(
        entries.iter().any(|e| e.detail["attempts"] == 2),
        "{entries:?}"
    );
    for e in &entries {
        let text = serde_json::to_string(e).unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("/hook/"),
            "{text}"
        );
    }
    let bodies = got.lock().clone();
    assert!(bodies.iter().any(
        |b| b["text"] == "[appliance] Disk space low: 9 MiB <free>" && b.get("html").is_none()
    ));
    assert!(
        bodies
            .iter()
            .any(|b| b["event"] == "disk_low" && b["severity"] == "warning")
    );
    assert!(
        bodies
            .iter()
            .any(|b| b["html"] == "<b>Disk space low</b>: 9 MiB &lt;free&gt;")
    );

    // The same event is not repeated within the interval; another key is; a test is.
    assert_eq!(
        notifier.notify("disk_low", "data", Severity::Warning, "x", "y"),
        0
    );
    assert_eq!(
        notifier.notify("gpu_hot", "0", Severity::Warning, "x", "y"),
        3
    );
    assert_eq!(notifier.notify("test", "", Severity::Info, "Test", "t"), 3);
    assert_eq!(notifier.notify("test", "", Severity::Info, "Test", "t"), 3);
}

#[tokio::test]
async fn a_target_that_keeps_failing_is_audited_as_failed_after_three_attempts() {
    let (url, got) = receiver(vec![500, 500, 500]).await;
    let (_dir, store) = store().await;
    let notifier = Notifier::new(
        &[format!("{url}/hook/x")],
        None,
        Duration::from_secs(60),
        store.clone(),
    )
    .with_backoff(vec![Duration::from_millis(10), Duration::from_millis(10)]);
    notifier.notify("job_failed", "k", Severity::Warning, "A job failed", "why");
    let entries = audit_entries(&store, 1).await;
    assert_eq!(entries[0].action, "notification.failed");
    assert_eq!(entries[0].detail["attempts"], 3);
    assert_eq!(entries[0].detail["status"], 500);
    assert_eq!(got.lock().len(), 3);
}
