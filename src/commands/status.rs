//! `appliance status`: asks the running daemon over its API.

use serde_json::Value;

use crate::cli::exit;
use crate::client::DaemonClient;
use crate::config::Loaded;

/// Prints the daemon's status (or its JSON).
pub fn run(loaded: &Loaded, json: bool) -> anyhow::Result<u8> {
    let client = DaemonClient::for_cli(loaded);
    let url = client.endpoint().to_string();
    let (status, ready) = super::block_on(async {
        let status = client.get_json("/api/v1/status").await?;
        // /readyz answers 503 with a body when not ready: that is information, not failure.
        let ready = client.get_json("/readyz").await.ok();
        Ok::<_, crate::client::ClientError>((status, ready))
    })??;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(exit::OK);
    }
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let readiness = match &ready {
        Some(r) if r["status"] == "ready" => "ready".to_string(),
        _ => "NOT READY (see /readyz or `appliance doctor`)".to_string(),
    };
    println!(
        "appliance {} at {url}: {readiness}, pid {}, up {}",
        text(&status["version"]),
        status["pid"],
        human_duration(status["uptime_seconds"].as_f64().unwrap_or(0.0))
    );
    println!("  started      {}", text(&status["started_at"]));
    for (label, key) in [
        ("data dir", "data_dir"),
        ("database", "database"),
        ("models dir", "models_dir"),
        ("log dir", "log_dir"),
        ("runtime dir", "runtime_dir"),
        ("unix socket", "unix_socket"),
    ] {
        println!("  {label:<12} {}", text(&status["paths"][key]));
    }
    let loaded_models = status["models"]["loaded"]
        .as_array()
        .map(|models| models.iter().map(text).collect::<Vec<_>>())
        .unwrap_or_default();
    println!(
        "  models       {}",
        if loaded_models.is_empty() {
            "none loaded".to_string()
        } else {
            loaded_models.join(", ")
        }
    );
    println!(
        "  queue        {} waiting, {} running",
        status["queue"]["waiting"], status["queue"]["running"]
    );
    let gpu = &status["gpu"];
    let devices: Vec<String> = gpu["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "#{} {} ({} free of {})",
                d["index"],
                text(&d["name"]),
                crate::gpu::human_bytes(d["memory_free_bytes"].as_u64().unwrap_or(0)),
                crate::gpu::human_bytes(d["memory_total_bytes"].as_u64().unwrap_or(0))
            )
        })
        .collect();
    match (
        devices.is_empty(),
        gpu["cuda_build"].as_bool().unwrap_or(false),
    ) {
        (true, _) => println!(
            "  gpu          none ({}): models run on the CPU",
            text(&gpu["reason"])
        ),
        (false, true) => println!("  gpu          {}", devices.join(", ")),
        (false, false) => println!(
            "  gpu          {} (this build has no CUDA: models run on the CPU)",
            devices.join(", ")
        ),
    }
    for m in status["plan"]["models"].as_array().into_iter().flatten() {
        println!(
            "  plan         {} ({}): {} {}/{} layers{} — {}",
            text(&m["name"]),
            text(&m["kind"]),
            text(&m["placement"]),
            m["gpu_layers"],
            m["total_layers"],
            if m["preload"] == true {
                ", preloaded"
            } else {
                ""
            },
            text(&m["reason"])
        );
    }
    if let Some(run) = status["previous_run_unclean"].as_object() {
        println!(
            "  note         the previous run (pid {}, started {}) did not stop cleanly",
            run.get("pid").map(text).unwrap_or_default(),
            run.get("started_at").map(text).unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

fn human_duration(seconds: f64) -> String {
    let s = seconds as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{}s", s % 60),
        (0, 0, _) => format!("{m}m {}s", s % 60),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}
