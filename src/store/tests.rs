use super::*;

fn options() -> StoreOptions {
    StoreOptions::new(Duration::from_secs(5), 2)
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
