//! Backups of a real store and files: make, list, verify, tamper, restore, prune.

use std::time::Duration;

use super::restore::read_manifest;
use super::*;
use crate::store::{Store, StoreOptions};
use std::io::Read;

const BUSY: Duration = Duration::from_secs(5);

/// A data dir with a database (one run recorded, one audit entry), two uploaded files,
/// a model file outside the data dir and a configuration file.
async fn fixture() -> (tempfile::TempDir, Sources) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let models = root.path().join("models");
    fs_err::create_dir_all(data.join("files/ab")).unwrap();
    fs_err::create_dir_all(&models).unwrap();
    fs_err::write(data.join("files/ab/abcdef"), b"an uploaded document").unwrap();
    fs_err::write(data.join("files/ab/abc123"), vec![7u8; 300_000]).unwrap();
    fs_err::write(models.join("tiny.gguf"), b"GGUF model bytes").unwrap();
    fs_err::write(root.path().join("config.toml"), "[server]\nport = 9999\n").unwrap();
    let db = data.join(DB_NAME);
    let store = Store::open(&db, StoreOptions::new(BUSY, 1)).unwrap();
    store.begin_run(42, "test").await.unwrap();
    store
        .audit(crate::store::accounts::AuditEntry {
            id: 0,
            at: "2026-12-02T00:00:00Z".into(),
            actor: Some("admin".into()),
            action: "test".into(),
            target: None,
            ip: None,
            success: true,
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
    let sources = Sources {
        data_dir: data,
        db,
        models_dir: models,
        config_file: Some(root.path().join("config.toml")),
        busy: BUSY,
    };
    (root, sources)
}

fn manual() -> Options {
    Options {
        kind: Kind::Manual,
        with_models: false,
    }
}

#[tokio::test]
async fn a_backup_round_trips_with_identical_rows_and_files() {
    let (root, sources) = fixture().await;
    let dir = root.path().join("backups");
    let made = create(&sources, &dir, None, &manual(), &|_, _| {}).unwrap();
    assert!(made.name.starts_with("appliance-") && made.name.ends_with(EXTENSION));
    let m = &made.manifest;
    assert_eq!(m.rows["daemon_runs"], 1);
    assert_eq!(m.rows["audit_log"], 1);
    let paths: Vec<&str> = m.members.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            DB_NAME,
            "files/ab/abc123",
            "files/ab/abcdef",
            "config/config.toml"
        ]
    );
    // The model is listed by checksum, not copied.
    assert_eq!(m.models.len(), 1);
    assert_eq!(m.models[0].path, "tiny.gguf");
    assert!(!m.with_models);
    // Listing reads the sidecar; the archive alone gives the same manifest.
    let listed = list(&dir);
    assert_eq!(listed.len(), 1);
    assert_eq!(read_manifest(&made.path).unwrap().members, m.members);
    let verified = verify(&made.path, BUSY).unwrap();
    assert_eq!(verified.members, 4);

    // Change the data after the backup, then restore: the backup's state returns.
    fs_err::write(sources.data_dir.join("files/ab/abcdef"), b"changed").unwrap();
    fs_err::write(sources.data_dir.join("files/ab/new"), b"added later").unwrap();
    fs_err::create_dir_all(sources.data_dir.join("logs")).unwrap();
    fs_err::write(sources.data_dir.join("logs/today.log"), b"kept").unwrap();
    let report = restore(&made.path, &sources.data_dir, &sources.models_dir, BUSY).unwrap();
    let census = crate::store::snapshot::census(&sources.db, BUSY).unwrap();
    assert_eq!(census.rows, m.rows);
    assert_eq!(census.integrity, ["ok"]);
    assert_eq!(
        fs_err::read(sources.data_dir.join("files/ab/abcdef")).unwrap(),
        b"an uploaded document"
    );
    assert!(!sources.data_dir.join("files/ab/new").exists());
    // What the archive does not hold comes along; the old tree is kept aside.
    assert_eq!(
        fs_err::read(sources.data_dir.join("logs/today.log")).unwrap(),
        b"kept"
    );
    let previous = report.previous.unwrap();
    assert!(previous.join("files/ab/new").exists());
    assert!(report.missing_models.is_empty());
    assert!(report.config.unwrap().ends_with(restore::CONFIG_COPY));
}

#[tokio::test]
async fn a_damaged_archive_fails_verification_and_a_restore_changes_nothing() {
    let (root, sources) = fixture().await;
    let dir = root.path().join("backups");
    let made = create(&sources, &dir, None, &manual(), &|_, _| {}).unwrap();
    // Truncated: the manifest (last) is gone.
    let bytes = fs_err::read(&made.path).unwrap();
    let cut = dir.join("cut.tar.zst");
    fs_err::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(verify(&cut, BUSY).is_err());
    // Rewritten with one member altered but the same manifest.
    let altered = dir.join("altered.tar.zst");
    rewrite(&made.path, &altered, |path, data| {
        if path == "files/ab/abcdef" {
            data[0] ^= 1;
        }
    });
    let err = verify(&altered, BUSY).unwrap_err().to_string();
    assert!(err.contains("files/ab/abcdef"), "{err}");
    // A member escaping the data dir is refused by name.
    let escaping = dir.join("escaping.tar.zst");
    rewrite_names(&made.path, &escaping, "files/ab/abcdef", "../../etc/passwd");
    let err = verify(&escaping, BUSY).unwrap_err().to_string();
    assert!(err.contains("no appliance backup contains"), "{err}");

    let before = fs_err::read(sources.data_dir.join("files/ab/abcdef")).unwrap();
    fs_err::write(sources.data_dir.join("files/ab/abcdef"), b"current").unwrap();
    for bad in [&cut, &altered, &escaping] {
        assert!(restore(bad, &sources.data_dir, &sources.models_dir, BUSY).is_err());
        assert_eq!(
            fs_err::read(sources.data_dir.join("files/ab/abcdef")).unwrap(),
            b"current"
        );
        assert!(sources.db.is_file());
    }
    assert_ne!(before, b"current");
    // No staging directory is left behind.
    let leftovers: Vec<_> = fs_err::read_dir(root.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("restore"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn with_models_copies_them_and_retention_keeps_only_scheduled_ones() {
    let (root, sources) = fixture().await;
    let dir = root.path().join("backups");
    let with = Options {
        kind: Kind::Manual,
        with_models: true,
    };
    let made = create(&sources, &dir, None, &with, &|_, _| {}).unwrap();
    assert!(
        made.manifest
            .members
            .iter()
            .any(|m| m.path == "models/tiny.gguf")
    );
    fs_err::remove_file(sources.models_dir.join("tiny.gguf")).unwrap();
    let report = restore(&made.path, &sources.data_dir, &sources.models_dir, BUSY).unwrap();
    assert!(report.missing_models.is_empty());
    assert!(sources.models_dir.join("tiny.gguf").is_file());

    let scheduled = Options {
        kind: Kind::Scheduled,
        with_models: false,
    };
    for _ in 0..3 {
        create(&sources, &dir, None, &scheduled, &|_, _| {}).unwrap();
    }
    let deleted = prune(&dir, 1);
    assert_eq!(deleted.len(), 2);
    let kinds: Vec<Kind> = list(&dir).iter().map(|b| b.manifest.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Scheduled).count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == Kind::Manual).count(), 1);
    assert!(delete(&dir, "../x.tar.zst").is_err());
}

/// Copies an archive, letting `edit` change members' bytes.
fn rewrite(from: &Path, to: &Path, edit: impl Fn(&str, &mut Vec<u8>)) {
    transform(from, to, |path, data| {
        edit(path, data);
        path.to_string()
    });
}

fn rewrite_names(from: &Path, to: &Path, old: &str, new: &str) {
    transform(from, to, |path, _| {
        if path == old {
            new.to_string()
        } else {
            path.to_string()
        }
    });
}

fn transform(from: &Path, to: &Path, edit: impl Fn(&str, &mut Vec<u8>) -> String) {
    let mut archive =
        tar::Archive::new(zstd::Decoder::new(fs_err::File::open(from).unwrap()).unwrap());
    let out = zstd::Encoder::new(fs_err::File::create(to).unwrap(), 1).unwrap();
    let mut builder = tar::Builder::new(out);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let name = edit(&path, &mut data);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        // Bypass the builder's path checks to write hostile names.
        let bytes = name.as_bytes();
        header.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}
