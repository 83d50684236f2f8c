//! The admin CLI: configuration precedence, doctor, migrations, exit codes.

use std::io::{Seek, SeekFrom, Write};

use crate::support::Dirs;

#[test]
fn config_precedence_is_file_then_env_then_flag() {
    let dirs = Dirs::new();
    std::fs::write(
        dirs.path("config.toml"),
        "[server]\nport = 9101\nshutdown_grace_secs = 7\n[store]\nreaders = 3\n",
    )
    .unwrap();
    let out = dirs
        .command()
        .env("APPLIANCE_SERVER_PORT", "9102")
        .env("APPLIANCE_STORE_READERS", "4")
        .args(["--port", "9103", "config", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .to_string()
    };
    let port = line("port");
    assert!(
        port.starts_with("port = 9103") && port.ends_with("# flag --port"),
        "{port}"
    );
    let readers = line("readers");
    assert!(
        readers.starts_with("readers = 4") && readers.ends_with("# env APPLIANCE_STORE_READERS"),
        "{readers}"
    );
    let grace = line("shutdown_grace_secs");
    assert!(
        grace.starts_with("shutdown_grace_secs = 7") && grace.contains("# file "),
        "{grace}"
    );
    let busy = line("busy_timeout_ms");
    assert!(busy.ends_with("# default"), "{busy}");
}

#[test]
fn unknown_config_key_is_rejected_naming_file_and_key() {
    let dirs = Dirs::new();
    let config = dirs.path("config.toml");
    std::fs::write(&config, "[server]\nbnid = \"0.0.0.0\"\n").unwrap();
    let out = dirs.run(&["serve"]);
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stderr.contains(&config.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("unknown key `server.bnid`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `server.bind`"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one clear line: {}",
        out.stderr
    );
    // The daemon never started: no database was created.
    assert!(!dirs.data().join("appliance.db").exists());
}

#[test]
fn config_default_is_the_commented_file_and_loads_as_is() {
    let dirs = Dirs::new();
    let out = dirs.run(&["config", "default"]).ok();
    assert!(out.stdout.contains("# Appliance configuration."));
    std::fs::write(dirs.path("config.toml"), &out.stdout).unwrap();
    let show = dirs.run(&["config", "show"]);
    assert_eq!(show.code(), 0, "{show:?}");
}

#[test]
fn migrate_upgrades_a_previous_schema_version() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.data()).unwrap();
    let db = dirs.data().join("appliance.db");
    {
        // A database as the previous release left it: schema version 1.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("../../src/store/migrations/0001_meta.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('marker', 'survives')",
            [],
        )
        .unwrap();
    }
    let doctor = dirs.run(&["doctor"]);
    assert!(
        doctor.stdout.contains("schema version 1"),
        "{}",
        doctor.stdout
    );

    let out = dirs.run(&["db", "migrate"]);
    assert_eq!(out.code(), 0, "{out:?}");
    let latest = appliance::store::SCHEMA_VERSION;
    assert!(
        out.stdout
            .contains(&format!("migrated schema version 1 -> {latest}")),
        "{}",
        out.stdout
    );
    let again = dirs.run(&["db", "migrate"]);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, latest);
    let marker: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'marker'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(marker, "survives");
}

#[test]
fn doctor_reports_integrity_ok_then_fails_on_a_corrupted_database() {
    let dirs = Dirs::new();
    dirs.run(&["db", "migrate"]).ok();
    let db = dirs.data().join("appliance.db");
    {
        // Enough rows for several b-tree pages, then a checkpoint into the main file.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..2000 {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                (format!("k{i:05}"), "v".repeat(100)),
            )
            .unwrap();
        }
        tx.commit().unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let healthy = dirs.run(&["doctor"]);
    let line = healthy
        .stdout
        .lines()
        .find(|l| l.contains(" database "))
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("ok") && line.contains("integrity_check ok"),
        "{line}"
    );

    // Overwrite the middle of the file (b-tree pages) with garbage.
    let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    let len = file.metadata().unwrap().len();
    file.seek(SeekFrom::Start(len / 2)).unwrap();
    file.write_all(&vec![0xA5; 8192]).unwrap();
    drop(file);

    let broken = dirs.run(&["doctor"]);
    assert_eq!(broken.code(), 6, "{broken:?}");
    let line = broken
        .stdout
        .lines()
        .find(|l| l.contains(" database "))
        .unwrap();
    assert!(line.starts_with("fail"), "{line}");
    assert!(
        broken.stdout.contains("restore the latest backup"),
        "{}",
        broken.stdout
    );
}

#[test]
fn doctor_flags_missing_models_with_the_fetch_command() {
    let dirs = Dirs::new();
    let out = dirs.run(&["doctor"]);
    assert_eq!(out.code(), 6);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("model SmolLM2-135M-Instruct"))
        .unwrap();
    assert!(
        line.starts_with("fail") && line.contains("missing"),
        "{line}"
    );
    assert!(
        out.stdout.contains("scripts/fetch-models"),
        "{}",
        out.stdout
    );
    for name in ["config", "data_dir", "disk_space", "port", "gpu"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "no {name} check in\n{}",
            out.stdout
        );
    }
}

#[test]
fn version_and_usage_exit_codes() {
    let dirs = Dirs::new();
    let version = dirs.run(&["version"]).ok();
    assert!(version.stdout.starts_with("appliance "));
    let usage = dirs.run(&["no-such-command"]);
    assert_eq!(usage.code(), 2);
    let bad_flag = dirs.run(&["--port", "eighty", "config", "show"]);
    assert_eq!(bad_flag.code(), 3);
    assert!(
        bad_flag.stderr.contains("flag --port"),
        "{}",
        bad_flag.stderr
    );
}

#[test]
fn doctor_verifies_the_fetched_default_models_by_sha256() {
    let dirs = Dirs::with_models();
    // Doctor checks that the configured port is free: use one that is, never the
    // default (a daemon started by `scripts/run` may hold it while the tests run).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = dirs.run(&["--port", &port, "doctor"]);
    let models: Vec<&str> = out
        .stdout
        .lines()
        // The check's name is the second column ("ok    model NAME …"); other checks'
        // messages may mention a model too.
        .filter(|l| l.split_whitespace().nth(1) == Some("model"))
        .collect();
    assert_eq!(models.len(), 4, "{}", out.stdout);
    for line in models {
        assert!(
            line.starts_with("ok") && line.contains("verified by sha256"),
            "{line}"
        );
    }
    // Nothing else fails either on a fresh data dir (the database only warns).
    out.ok();
}
