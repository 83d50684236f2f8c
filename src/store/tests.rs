use super::*;

fn options() -> StoreOptions {
    StoreOptions::new(Duration::from_secs(5), 2)
}

/// A new document's file: "a.txt", content digest `ab…`.
fn new_document() -> crate::store::documents::NewDocument {
    crate::store::documents::NewDocument {
        sha256: "ab".repeat(32),
        name: "a.txt".into(),
        media_type: "text".into(),
        size: 3,
        source_url: None,
    }
}

/// A store in `dir` with collection "c" holding that document, queued for indexing.
async fn store_with_document(
    dir: &tempfile::TempDir,
) -> (
    Store,
    crate::store::documents::Collection,
    crate::store::documents::Document,
) {
    let store = Store::open(&dir.path().join("d.db"), options()).unwrap();
    let c = store
        .create_collection(None, "c".into(), String::new())
        .await
        .unwrap();
    let (doc, dup) = store
        .add_document(c.id, None, None, new_document())
        .await
        .unwrap();
    assert!(!dup);
    (store, c, doc)
}

#[tokio::test]
async fn a_full_queue_answers_busy_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options();
    options.queue = 4;
    options.queue_wait = Duration::from_millis(200);
    let store = Store::open(&dir.path().join("q.db"), options).unwrap();
    // Hold the writer thread, then flood its queue.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let blocker = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write("hold", move |_| {
                    let _ = held.recv_timeout(Duration::from_secs(10));
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let flood: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.write("noop", |_| Ok(())).await })
        })
        .collect();
    // Past the queue wait, everything that found no place has given up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    release.send(()).unwrap();
    let results = futures_util::future::join_all(flood).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StoreError::Busy))))
        .count();
    blocker.await.unwrap().unwrap();
    assert!(busy >= 40, "{busy} of 50 were refused");
    // Once the writer is free again, calls go through.
    store.write("after", |_| Ok(())).await.unwrap();
}

#[tokio::test]
async fn fresh_database_reaches_latest_schema_with_wal_and_vec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = Store::open(&path, options()).unwrap();
    let vec = store.ping().await.unwrap();
    assert!(vec.starts_with('v'), "{vec}");
    let (mode, sync, fk, version): (String, i64, i64, u32) = store
        .read("pragmas", |c| {
            Ok(c.query_row(
                "SELECT (SELECT journal_mode FROM pragma_journal_mode), \
                        (SELECT synchronous FROM pragma_synchronous), \
                        (SELECT foreign_keys FROM pragma_foreign_keys), \
                        (SELECT user_version FROM pragma_user_version)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous must be FULL");
    assert_eq!(fk, 1);
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(store.meta("instance_id").await.unwrap().unwrap().len(), 32);
}

#[tokio::test]
async fn upgrade_from_previous_version_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut conn = open_connection(&path, Duration::from_secs(1), false).unwrap();
        migrations::migrate_to(&mut conn, SCHEMA_VERSION - 1).unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('marker', 'kept')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path, options()).unwrap();
    assert_eq!(store.meta("marker").await.unwrap().as_deref(), Some("kept"));
    let inspection = inspect(&path, Duration::from_secs(1)).unwrap();
    assert_eq!(inspection.schema_version, SCHEMA_VERSION);
    assert_eq!(inspection.integrity, ["ok"]);
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 5)
            .unwrap();
    }
    match Store::open(&path, options()) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 5, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn unclean_runs_are_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("r.db"), options()).unwrap();
    let (first, previous) = store.begin_run(10, "0.1.0").await.unwrap();
    assert!(previous.is_none());
    // No end_run: the next start sees the first as unclean.
    let (second, previous) = store.begin_run(11, "0.1.0").await.unwrap();
    assert_eq!(previous.unwrap().pid, 10);
    store.end_run(second).await.unwrap();
    let (_, previous) = store.begin_run(12, "0.1.0").await.unwrap();
    assert!(previous.is_none(), "a clean stop is not reported");
    assert_ne!(first, second);
}

#[tokio::test]
async fn readers_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ro.db"), options()).unwrap();
    let result = store
        .read("bad_write", |c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')", [])?;
            Ok(())
        })
        .await;
    assert!(matches!(result, Err(StoreError::Sqlite(_))));
}

#[tokio::test]
async fn observer_sees_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let store = Store::open(
        &dir.path().join("o.db"),
        StoreOptions {
            observer: Some(Arc::new(move |op, _| sink.lock().push(op))),
            ..options()
        },
    )
    .unwrap();
    store.ping().await.unwrap();
    store.meta("created_at").await.unwrap();
    assert_eq!(*seen.lock(), ["ping", "meta"]);
}

#[tokio::test]
async fn chunks_replace_a_document_atomically_and_bits_match_our_quantiser() {
    use crate::store::chunks::NewChunk;
    let dir = tempfile::tempdir().unwrap();
    let (store, c, doc) = store_with_document(&dir).await;
    let (again, dup) = store
        .add_document(c.id, None, None, new_document())
        .await
        .unwrap();
    assert!(
        dup && again.id == doc.id,
        "the same content twice is one document"
    );
    let job = store
        .claim_job(vec![crate::store::documents::INGEST_JOB.into()])
        .await
        .unwrap()
        .expect("adding a document queues its job");
    assert_eq!(Some(job.id), doc.job_id);
    let vector: Vec<f32> = (0..384)
        .map(|i| if i % 3 == 0 { 0.5 } else { -0.25 })
        .collect();
    let chunk = |text: &str| NewChunk {
        text: text.into(),
        page: Some(1),
        heading: "H".into(),
        char_start: 0,
        char_end: text.len() as i64,
        tokens: 2,
        embedding: vector.clone(),
    };
    for _ in 0..2 {
        // A rerun (retry, resume) replaces the chunks: never duplicates.
        let entries = store
            .store_chunks(
                doc.id,
                job.id,
                "m".into(),
                None,
                vec![chunk("one"), chunk("two")],
            )
            .await
            .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].bits, crate::documents::index::quantize(&vector));
    }
    let (chunks, total) = store.chunks(doc.id, None, 0, 10).await.unwrap();
    assert_eq!((chunks.len(), total), (2, 2));
    let doc = store.document(doc.id, None).await.unwrap();
    assert_eq!((doc.state.as_str(), doc.chunks), ("ready", 2));
    let vectors = store.chunk_vectors(vec![chunks[0].id]).await.unwrap();
    assert_eq!(vectors[0].1, vector);
    let found = store
        .keyword_search(vec!["two".into()], vec![c.id], vec![], 10)
        .await
        .unwrap();
    assert_eq!(found, vec![chunks[1].id]);
    // A stale job (superseded by a re-index) cannot overwrite the document.
    store
        .finish_job(job.id, crate::store::jobs::Outcome::Done)
        .await
        .unwrap();
    store.reindex_document(doc.id, None, None).await.unwrap();
    assert!(matches!(
        store
            .store_chunks(doc.id, job.id, "m".into(), None, vec![])
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn orphaned_running_jobs_are_queued_again_and_retries_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("j.db"), options()).unwrap();
    let job = store
        .create_job("test.kind", None, serde_json::json!({}), 2)
        .await
        .unwrap();
    let kinds = vec!["test.kind".to_string()];
    let claimed = store.claim_job(kinds.clone()).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.attempts), (job.id, 1));
    assert!(
        store.claim_job(kinds.clone()).await.unwrap().is_none(),
        "claimed once"
    );
    assert_eq!(store.requeue_orphaned_jobs().await.unwrap(), 1);
    let again = store.claim_job(kinds.clone()).await.unwrap().unwrap();
    assert_eq!(again.attempts, 2);
    let later = crate::store::conversations::timestamp_after(Duration::from_secs(60));
    let failed = store
        .finish_job(
            job.id,
            crate::store::jobs::Outcome::Retry {
                error: "busy".into(),
                run_after: later,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failed.state, "failed",
        "no attempts left: the retry becomes a failure"
    );
    assert_eq!(failed.error.as_deref(), Some("busy"));
}

#[tokio::test]
async fn cancelling_a_queued_ingest_job_fails_its_document_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, doc) = store_with_document(&dir).await;
    let job = doc.job_id.unwrap();
    assert_eq!(
        store.cancel_job(job, None).await.unwrap().state,
        "cancelled"
    );
    let doc = store.document(doc.id, None).await.unwrap();
    assert_eq!(doc.state, "failed");
    assert_eq!(doc.error.as_deref(), Some("indexing was cancelled"));
    assert!(
        store
            .claim_job(vec![crate::store::documents::INGEST_JOB.into()])
            .await
            .unwrap()
            .is_none(),
        "a cancelled job is never claimed"
    );
}

#[tokio::test]
async fn common_terms_are_left_out_of_keyword_search_rarest_first() {
    use crate::store::chunks::{NewChunk, selective_terms};
    let dir = tempfile::tempdir().unwrap();
    let (store, c, doc) = store_with_document(&dir).await;
    // "common" and "words" in all 30 chunks, "middling" in 4, "rare" in 1.
    let chunks = (0..30)
        .map(|i| NewChunk {
            text: format!(
                "common words {} {}",
                if i == 7 { "rare" } else { "" },
                if i < 4 { "middling" } else { "" }
            ),
            page: None,
            heading: String::new(),
            char_start: 0,
            char_end: 1,
            tokens: 3,
            embedding: vec![0.5; 8],
        })
        .collect();
    store
        .store_chunks(doc.id, doc.job_id.unwrap(), "m".into(), None, chunks)
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("d.db")).unwrap();
    let pick = |terms: &[&str], budget| {
        selective_terms(&conn, terms.iter().map(|t| t.to_string()).collect(), budget).unwrap()
    };
    assert_eq!(
        pick(&["common", "rare", "middling"], 5).as_deref(),
        Some("\"rare\" OR \"middling\"")
    );
    assert_eq!(
        pick(&["common", "rare"], 100).as_deref(),
        Some("\"rare\" OR \"common\""),
        "within the budget nothing is left out"
    );
    assert_eq!(
        pick(&["common", "words"], 5),
        None,
        "only words in every chunk: no keyword signal"
    );
    assert_eq!(
        pick(&["caf\u{e9}", "common"], 5).as_deref(),
        Some("\"caf\u{e9}\""),
        "unknown to the vocabulary (FTS5 folds diacritics): kept"
    );
    assert_eq!(pick(&[], 5), None);
    let found = store
        .keyword_search(vec!["rare".into(), "x-y".into()], vec![c.id], vec![], 10)
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        1,
        "non-word terms are dropped, the rare one matches"
    );
}

#[tokio::test]
async fn the_local_administrator_is_created_once_has_no_password_and_leaves_setup_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db"), options()).unwrap();
    let first = store.local_admin().await.unwrap();
    assert_eq!(first.name, crate::auth::peer::LOCAL_ADMIN);
    assert_eq!(first.role, crate::auth::Role::Admin);
    assert_eq!(store.local_admin().await.unwrap().id, first.id, "reused");
    let (_, hash) = store
        .user_by_name("LOCAL-ADMIN".into())
        .await
        .unwrap()
        .unwrap();
    assert!(!crate::auth::verify_password(&hash, ""));
    assert!(!crate::auth::verify_password(&hash, "!"));
    // The host's CLI using the socket must not close first-run setup.
    assert_eq!(store.count_users().await.unwrap(), 0);
    store
        .create_user("root".into(), "x".into(), crate::auth::Role::Admin, true)
        .await
        .unwrap();
    assert_eq!(store.count_users().await.unwrap(), 1);
    // A disabled local administrator stays disabled.
    store
        .update_user(first.id, None, None, Some(true))
        .await
        .unwrap();
    assert!(store.local_admin().await.unwrap().disabled);
}

#[tokio::test]
async fn audit_entries_of_some_actions_are_found_behind_any_number_of_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("d.db"), options()).unwrap();
    let entry = |action: &str, n: i64| crate::store::accounts::AuditEntry {
        id: 0,
        at: format!("2026-12-02T00:00:{:02}Z", n % 60),
        actor: None,
        action: action.into(),
        target: Some(format!("t{n}")),
        ip: None,
        success: true,
        detail: serde_json::json!({ "n": n }),
    };
    store.audit(entry("notification.sent", 1)).await.unwrap();
    store.audit(entry("notification.failed", 2)).await.unwrap();
    for n in 0..700 {
        store.audit(entry("auth.login", n)).await.unwrap();
    }
    store.audit(entry("notification.sent", 3)).await.unwrap();
    let found = store
        .audit_log_of(&["notification.sent", "notification.failed"], 100)
        .await
        .unwrap();
    let targets: Vec<_> = found.iter().map(|e| e.target.clone().unwrap()).collect();
    assert_eq!(targets, ["t3", "t2", "t1"]);
    let newest = store
        .audit_log_of(&["notification.sent", "notification.failed"], 2)
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[1].target.as_deref(), Some("t2"));
    // The index is there and used.
    let plan: String = {
        let conn = rusqlite::Connection::open(dir.path().join("d.db")).unwrap();
        conn.query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM audit_log WHERE action = 'x' ORDER BY id DESC LIMIT 5",
            [],
            |row| row.get(3),
        )
        .unwrap()
    };
    assert!(plan.contains("audit_log_action"), "{plan}");
}
