use super::*;

fn write_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs_err::write(&path, text).unwrap();
    (dir, path)
}

fn cli_with(path: &std::path::Path, settings: &[(&str, &str, &str)]) -> CliOverrides {
    CliOverrides {
        config_file: Some(path.to_path_buf()),
        layout: Some(Layout::User),
        settings: settings
            .iter()
            .map(|(k, v, f)| (k.to_string(), v.to_string(), f.to_string()))
            .collect(),
    }
}

#[test]
fn embedded_defaults_load_without_any_layer() {
    let cli = CliOverrides {
        layout: Some(Layout::System),
        ..Default::default()
    };
    let loaded = load(&cli, &Environment::default()).unwrap();
    assert_eq!(loaded.config.server.port, 8470);
    assert_eq!(loaded.config.server.bind.to_string(), "127.0.0.1");
    assert_eq!(
        loaded.config.paths.data_dir,
        PathBuf::from("/var/lib/appliance")
    );
    assert_eq!(
        loaded.config.paths.models_dir,
        PathBuf::from("/var/lib/appliance/models")
    );
    assert_eq!(loaded.source_of("server.port"), Some(&Source::Default));
    assert_eq!(
        loaded.source_of("paths.log_dir"),
        Some(&Source::Layout(Layout::System))
    );
}

#[test]
fn precedence_is_default_then_file_then_env_then_flag() {
    let (_dir, path) = write_file(
        "[server]\nport = 9001\nshutdown_grace_secs = 3\n[log]\nlevel = \"debug\"\nretention_days = 3\n",
    );
    let env = Environment::from_pairs([
        ("APPLIANCE_SERVER_PORT", "9002"),
        ("APPLIANCE_LOG_LEVEL", "warn"),
    ]);
    let cli = cli_with(&path, &[("server.port", "9003", "--port")]);
    let loaded = load(&cli, &env).unwrap();

    // flag beats env beats file
    assert_eq!(loaded.config.server.port, 9003);
    assert_eq!(
        loaded.source_of("server.port"),
        Some(&Source::Flag("--port".into()))
    );
    // env beats file
    assert_eq!(loaded.config.log.level, "warn");
    assert_eq!(
        loaded.source_of("log.level"),
        Some(&Source::Env("APPLIANCE_LOG_LEVEL".into()))
    );
    // file beats default
    assert_eq!(loaded.config.server.shutdown_grace_secs, 3);
    assert_eq!(
        loaded.source_of("server.shutdown_grace_secs"),
        Some(&Source::File(path.clone()))
    );
    assert_eq!(loaded.config.log.retention_days, 3);
    // untouched keys keep the default
    assert_eq!(loaded.config.store.readers, 2);
    assert_eq!(loaded.source_of("store.readers"), Some(&Source::Default));
}

#[test]
fn rust_log_overrides_the_configured_level() {
    let (_dir, path) = write_file("[log]\nlevel = \"debug\"\n");
    let env = Environment::from_pairs([("RUST_LOG", "appliance=trace")]);
    let loaded = load(&cli_with(&path, &[]), &env).unwrap();
    assert_eq!(loaded.config.log.level, "appliance=trace");
    assert_eq!(
        loaded.source_of("log.level"),
        Some(&Source::Env("RUST_LOG".into()))
    );
}

#[test]
fn unknown_file_key_names_file_key_and_suggestion() {
    let (_dir, path) = write_file("[server]\nprot = 9000\n");
    let err = load(&cli_with(&path, &[]), &Environment::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("unknown key `server.prot`"), "{msg}");
    assert!(msg.contains("did you mean `server.port`"), "{msg}");
}

#[test]
fn unknown_section_is_rejected() {
    let (_dir, path) = write_file("[sever]\nport = 9000\n");
    let msg = load(&cli_with(&path, &[]), &Environment::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unknown key `sever.port`"), "{msg}");
}

#[test]
fn wrong_type_in_file_names_expected_type() {
    let (_dir, path) = write_file("[server]\nport = \"eighty\"\n");
    let msg = load(&cli_with(&path, &[]), &Environment::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("`server.port`"), "{msg}");
    assert!(msg.contains("expected an integer"), "{msg}");
}

#[test]
fn out_of_range_value_is_blamed_on_its_layer() {
    let (_dir, path) = write_file("[server]\nport = 9000\n");
    let env = Environment::from_pairs([("APPLIANCE_SERVER_PORT", "70000")]);
    let msg = load(&cli_with(&path, &[]), &env).unwrap_err().to_string();
    assert!(msg.starts_with("env APPLIANCE_SERVER_PORT"), "{msg}");
    assert!(msg.contains("`server.port`"), "{msg}");

    let env = Environment::from_pairs([("APPLIANCE_LOG_FORMAT", "xml")]);
    let msg = load(&cli_with(&path, &[]), &env).unwrap_err().to_string();
    assert!(msg.contains("env APPLIANCE_LOG_FORMAT"), "{msg}");
    assert!(msg.contains("`log.format`"), "{msg}");

    let (_dir2, path2) = write_file("[store]\nreaders = 0\n");
    let msg = load(&cli_with(&path2, &[]), &Environment::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&path2.display().to_string()), "{msg}");
    assert!(msg.contains("`store.readers`"), "{msg}");
}

#[test]
fn unknown_environment_variable_is_rejected() {
    let (_dir, path) = write_file("");
    let env = Environment::from_pairs([("APPLIANCE_SERVER_PROT", "1")]);
    let msg = load(&cli_with(&path, &[]), &env).unwrap_err().to_string();
    assert!(msg.contains("APPLIANCE_SERVER_PROT"), "{msg}");
    assert!(msg.contains("APPLIANCE_SERVER_PORT"), "{msg}");
}

#[test]
fn bad_flag_value_names_the_flag() {
    let (_dir, path) = write_file("");
    let cli = cli_with(&path, &[("server.bind", "not-an-ip", "--bind")]);
    let msg = load(&cli, &Environment::default()).unwrap_err().to_string();
    assert!(msg.starts_with("flag --bind"), "{msg}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let cli = cli_with(std::path::Path::new("/nonexistent/appliance.toml"), &[]);
    let msg = load(&cli, &Environment::default()).unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/appliance.toml"), "{msg}");
}

#[test]
fn models_dir_follows_an_overridden_data_dir() {
    let (_dir, path) = write_file("[paths]\ndata_dir = \"/srv/appliance\"\n");
    let loaded = load(&cli_with(&path, &[]), &Environment::default()).unwrap();
    assert_eq!(
        loaded.config.paths.models_dir,
        PathBuf::from("/srv/appliance/models")
    );
}

#[test]
fn every_key_can_be_set_through_its_environment_variable() {
    // For each setting, a value of the right type in APPLIANCE_SECTION_KEY must be
    // accepted and recorded as coming from that variable: no key is unreachable.
    let table: toml::Table = DEFAULT_TOML.parse().unwrap();
    let (_dir, path) = write_file("");
    for (section, inner) in &table {
        for (key, default) in inner.as_table().unwrap() {
            let name = format!("{section}.{key}");
            let var = layers::env_name(&name);
            let value = match (name.as_str(), default) {
                (
                    "paths.data_dir" | "paths.models_dir" | "paths.log_dir" | "paths.runtime_dir",
                    _,
                ) => "/srv/appliance".to_string(),
                ("server.bind", _) => "127.0.0.2".to_string(),
                ("log.format", _) => "json".to_string(),
                ("engine.keep_alive" | "engine.user_max_keep_alive", _) => "1m".to_string(),
                ("tls.cert" | "tls.key", _) => continue, // only valid as a pair
                ("pull.hub_url", _) => "https://mirror.example".to_string(),
                ("pull.proxy", _) => "http://proxy.example:3128".to_string(),
                (_, toml::Value::Integer(n)) => (n + 1).to_string(),
                (_, toml::Value::Boolean(b)) => (!b).to_string(),
                (_, toml::Value::Float(f)) => (f / 2.0).to_string(),
                (_, toml::Value::Array(_)) => "[]".to_string(),
                (_, other) => other.as_str().unwrap_or("x").to_string() + "-changed",
            };
            let env = Environment::from_pairs([(var.clone(), value)]);
            let loaded = load(&cli_with(&path, &[]), &env).unwrap_or_else(|e| panic!("{var}: {e}"));
            assert_eq!(
                loaded.source_of(&name),
                Some(&Source::Env(var.clone())),
                "{var}"
            );
        }
    }
}

#[test]
fn tls_needs_both_files_and_switches_the_local_url_to_https() {
    let (_dir, path) = write_file("[tls]\ncert = \"/etc/appliance/cert.pem\"\n");
    let msg = load(&cli_with(&path, &[]), &Environment::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`tls.key`"), "{msg}");
    let (_dir, path) =
        write_file("[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n[server]\nport = 9443\n");
    let loaded = load(&cli_with(&path, &[]), &Environment::default()).unwrap();
    assert!(loaded.config.tls_enabled());
    assert_eq!(loaded.config.local_url(), "https://127.0.0.1:9443");
}

#[test]
fn keep_alive_values_are_parsed_bounded_and_never_panic() {
    use std::time::Duration;
    let secs = |s: &str| parse_keep_alive(s).map(|d| d.map(|d| d.as_secs_f64()));
    assert_eq!(secs("5m"), Some(Some(300.0)));
    assert_eq!(secs("1h30m"), Some(Some(5400.0)));
    assert_eq!(secs("250ms"), Some(Some(0.25)));
    assert_eq!(secs("1.5h"), Some(Some(5400.0)));
    assert_eq!(secs("30"), Some(Some(30.0)));
    assert_eq!(secs("0"), Some(Some(0.0)));
    assert_eq!(secs("-1"), Some(None));
    assert_eq!(secs("-5m"), Some(None));
    for bad in [
        "NaN", "nan", "inf", "-inf", "infinity", "5x", "m", "", "1..5s", "5 m",
    ] {
        assert_eq!(parse_keep_alive(bad), None, "{bad:?}");
    }
    // Huge values are clamped to a year instead of overflowing a Duration.
    for huge in ["1e20", "1e308", "99999999999999h"] {
        assert_eq!(
            parse_keep_alive(huge),
            Some(Some(Duration::from_secs_f64(MAX_KEEP_ALIVE_SECS))),
            "{huge}"
        );
    }
}

#[test]
fn pull_settings_are_bounded_and_the_token_is_never_printed() {
    let (_dir, path) = write_file("");
    for (key, bad) in [
        ("pull.hub_url", "ftp://hub.example"),
        ("pull.hub_url", "not a url"),
        ("pull.proxy", "socks5://proxy"),
        ("pull.token", "has a space"),
        ("pull.max_download_bytes", "0"),
        ("pull.retries", "1000"),
        ("pull.stall_timeout_secs", "0"),
    ] {
        let error = load(
            &cli_with(&path, &[(key, bad, "--set")]),
            &Environment::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains(key), "{key}={bad}: {error}");
    }
    let loaded = load(
        &cli_with(&path, &[("pull.token", "hf_secret123", "--set")]),
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(loaded.config.pull.token, "hf_secret123");
    assert!(!format!("{:?}", loaded.config).contains("hf_secret123"));
    assert_eq!(loaded.config.pull.hub_url, "https://huggingface.co");
}

#[test]
fn the_unix_socket_lives_in_the_runtime_dir_unless_absolute_or_off() {
    let (_dir, path) = write_file("[paths]\nruntime_dir = \"/run/appliance\"\n");
    let socket = |settings: &[(&str, &str, &str)]| {
        load(&cli_with(&path, settings), &Environment::default())
            .unwrap()
            .config
            .unix_socket_path()
    };
    assert_eq!(
        socket(&[]),
        Some(PathBuf::from("/run/appliance/appliance.sock"))
    );
    assert_eq!(
        socket(&[("server.unix_socket", "/tmp/a.sock", "--set")]),
        Some(PathBuf::from("/tmp/a.sock"))
    );
    assert_eq!(socket(&[("server.unix_socket", "", "--set")]), None);
}

#[test]
fn peer_users_map_unix_names_and_malformed_entries_are_refused() {
    let (_dir, path) = write_file("[server]\npeer_users = [\"alice\", \"bob=robert\"]\n");
    let loaded = load(&cli_with(&path, &[]), &Environment::default()).unwrap();
    let server = &loaded.config.server;
    assert_eq!(server.peer_user("alice"), Some("alice"));
    assert_eq!(server.peer_user("bob"), Some("robert"));
    assert_eq!(server.peer_user("robert"), None);
    assert_eq!(server.peer_user("mallory"), None);
    for bad in ["\"\"", "\"=bob\"", "\"alice=\"", "\"a b\"", "\"a=b=c\""] {
        let (_dir, path) = write_file(&format!("[server]\npeer_users = [{bad}]\n"));
        let msg = load(&cli_with(&path, &[]), &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`server.peer_users`"), "{bad}: {msg}");
    }
}

#[test]
fn per_model_settings_come_from_the_file_and_are_checked_by_name() {
    let (_dir, path) = write_file(
        "[engine]\ngpu_layers = 0\n[models.\"Qwen2.5-Coder-0.5B\"]\ngpu_layers = 20\nslots = 2\nkeep_alive = \"-1\"\npinned = true\n[models.small]\npreload = true\n",
    );
    let loaded = load(&cli_with(&path, &[]), &Environment::default()).unwrap();
    let qwen = &loaded.config.models["Qwen2.5-Coder-0.5B"];
    assert_eq!(
        (qwen.gpu_layers, qwen.slots, qwen.pinned),
        (Some(20), Some(2), true)
    );
    assert_eq!(qwen.keep_alive.as_deref(), Some("-1"));
    assert!(loaded.config.models["small"].preload);
    assert_eq!(loaded.config.engine.gpu_layers, 0);

    for (text, names) in [
        ("[models.x]\ngpu_layer = 3\n", "gpu_layer"),
        ("[models.x]\nslots = 0\n", "models.\"x\".slots"),
        (
            "[models.x]\nkeep_alive = \"soon\"\n",
            "models.\"x\".keep_alive",
        ),
        ("[models.x]\ngpu_layers = -2\n", "models.\"x\".gpu_layers"),
        ("[models]\nx = 3\n", "models"),
        ("[engine]\ngpu_layers = -5\n", "engine.gpu_layers"),
        ("[gpu]\nmax_queued_loads = 0\n", "gpu.max_queued_loads"),
    ] {
        let (_dir, path) = write_file(text);
        let err = load(&cli_with(&path, &[]), &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(names), "{text}: {err}");
        assert!(err.contains(&path.display().to_string()), "{text}: {err}");
    }
}
