//! Backups against the real daemon and CLI: an online backup while requests write,
//! the API (job, list, download, delete), verification of the downloaded archive, and a
//! restore that refuses a running daemon, then brings the data back exactly.

use std::time::Duration;

use crate::support::{Dirs, TestApp, get_json};

/// Waits (bounded) for a job to end; returns its final JSON.
async fn job_done(app: &TestApp, id: i64) -> serde_json::Value {
    for _ in 0..300 {
        let job = get_json(app, &format!("/api/v1/jobs/{id}")).await;
        if matches!(job["state"].as_str(), Some("done" | "failed" | "cancelled")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn online_backup_download_verify_and_restore_round_trip() {
    let dirs = Dirs::with_models();
    let app = TestApp::spawn(&dirs);
    let port = app.url.rsplit(':').next().unwrap().to_string();
    // Some data: users and keys (made by the fixture), a conversation.
    let made = app
        .request(reqwest::Method::POST, "/api/v1/conversations")
        .json(&serde_json::json!({"title": "kept by the backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{:?}", made.text().await);

    // A non-administrator cannot see or make backups.
    let user = crate::support::user_key(&dirs, "backup-user", "user", "chat");
    let refused = app
        .anonymous
        .get(format!("{}/api/v1/backups", app.url))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let listed = get_json(&app, "/api/v1/backups").await;
    assert_eq!(listed["backups"], serde_json::json!([]));
    assert_eq!(listed["schedule_hours"], 24);

    // Backup through the API, while another conversation is being written.
    let writer = {
        let http = app.http.clone();
        let url = app.url.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let _ = http
                    .post(format!("{url}/api/v1/conversations"))
                    .json(&serde_json::json!({"title": format!("during {i}")}))
                    .send()
                    .await;
            }
        })
    };
    let started = app
        .request(reqwest::Method::POST, "/api/v1/backups")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let id = started.json::<serde_json::Value>().await.unwrap()["job_id"]
        .as_i64()
        .unwrap();
    let job = job_done(&app, id).await;
    assert_eq!(job["state"], "done", "{job}");
    writer.await.unwrap();

    let listed = get_json(&app, "/api/v1/backups").await;
    let archive = &listed["backups"][0];
    let name = archive["name"].as_str().unwrap().to_string();
    assert_eq!(archive["kind"], "manual");
    assert!(archive["rows"]["conversations"].as_i64().unwrap() >= 1);
    assert!(archive["rows"]["users"].as_i64().unwrap() >= 2);
    assert_eq!(listed["overdue"], false);
    assert_eq!(listed["last_success_at"], archive["created_at"]);

    // Hostile names are refused by name, unknown ones are 404.
    let bad = app
        .get("/api/v1/backups/..%2Fappliance.db")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = app
        .get("/api/v1/backups/appliance-19700101T000000Z.tar.zst")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Download it and verify the copy with the CLI.
    let download = app
        .get(&format!("/api/v1/backups/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&name)
    );
    let bytes = download.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, archive["bytes"].as_u64().unwrap());
    let copy = dirs.path("downloaded.tar.zst");
    fs_err::write(&copy, &bytes).unwrap();
    let verified = dirs.run(&["backup", "verify", copy.to_str().unwrap()]).ok();
    assert!(verified.stdout.starts_with("ok: "), "{}", verified.stdout);

    // /metrics and /readyz know the newest backup.
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("appliance_backup_last_duration_seconds"));
    assert!(!metrics.contains("appliance_backup_last_success_timestamp_seconds 0\n"));

    // A CLI backup beside the running daemon is fine too.
    let cli = dirs.run(&["backup", "create"]).ok();
    assert!(cli.stdout.starts_with("backup "), "{}", cli.stdout);
    let list = dirs.run(&["backup", "list"]).ok();
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);

    // Data written after the backup…
    let later = app
        .request(reqwest::Method::POST, "/api/v1/conversations")
        .json(&serde_json::json!({"title": "written after the backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(later.status(), 201);
    let conversations = |json: &serde_json::Value| -> Vec<String> {
        let mut titles: Vec<String> = json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap_or_default().to_string())
            .collect();
        titles.sort();
        titles
    };
    let before_restore = conversations(&get_json(&app, "/api/v1/conversations?limit=100").await);
    assert!(before_restore.contains(&"written after the backup".to_string()));

    // …a restore refuses while the daemon runs, and names the way out.
    let refused = dirs.run(&["restore", copy.to_str().unwrap()]);
    assert_eq!(refused.code(), 4, "{refused:?}");
    assert!(refused.stderr.contains("--stop"), "{}", refused.stderr);

    // With --stop it stops the daemon, restores and says where the old data went.
    let restored = dirs
        .run(&["restore", "--stop", copy.to_str().unwrap()])
        .ok();
    assert!(restored.stdout.contains("restored "), "{}", restored.stdout);
    assert!(
        restored.stdout.contains("before-restore"),
        "{}",
        restored.stdout
    );
    let (status, _) = app.wait(Duration::from_secs(30));
    assert!(status.success());

    // The daemon starts on the restored data: the backup's rows, not the later ones.
    let app = TestApp::spawn(&dirs);
    let after = conversations(&get_json(&app, "/api/v1/conversations?limit=100").await);
    assert!(
        after.contains(&"kept by the backup".to_string()),
        "{after:?}"
    );
    assert!(
        !after.contains(&"written after the backup".to_string()),
        "{after:?}"
    );
    // The backups survived the restore, and the restore is audited.
    let listed = get_json(&app, "/api/v1/backups").await;
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
    let audit = dirs.run(&["audit", "--limit", "5"]).ok();
    assert!(audit.stdout.contains("backup.restore"), "{}", audit.stdout);
    let _ = port;

    // Delete through the API.
    let gone = app
        .request(reqwest::Method::DELETE, &format!("/api/v1/backups/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        get_json(&app, "/api/v1/backups").await["backups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
