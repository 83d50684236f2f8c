//! The GPU from the command line (`appliance gpu`), and the start-up plan `serve` makes
//! once it is up.
//!
//! `appliance gpu` asks the running daemon (`GET /api/v1/gpu`: devices, budget, the
//! models holding memory, the load queue, the plan); when no daemon answers it probes
//! the driver itself and says so. No GPU is a normal answer (exit 0).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::cli::exit;
use crate::client::DaemonClient;
use crate::config::{Config, Loaded};
use crate::engine::plan::{self, Candidate, StartupPlan};
use crate::engine::{Engine, EngineConfig, KeepAliveRequest, ModelKind, ModelSpec, footprint};
use crate::gpu::{Gpu, human_bytes};
use crate::models::registry::Registry;

/// Prints the GPU report once, or every `watch` seconds until interrupted.
pub fn run(loaded: &Loaded, json: bool, watch: Option<u64>) -> anyhow::Result<u8> {
    let client = DaemonClient::for_cli(loaded);
    loop {
        let report = super::block_on(async { client.get_json("/api/v1/gpu").await })?;
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                // No daemon (or no access): the driver alone still answers.
                let snapshot = Gpu::system().latest();
                let mut value = serde_json::to_value(&*snapshot)?;
                value["daemon"] = Value::String(format!("not reachable: {e}"));
                value
            }
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            if watch.is_some() {
                // Clear the terminal and start at the top.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render(&report));
        }
        match watch {
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.clamp(1, 3600))),
            None => return Ok(exit::OK),
        }
    }
}

/// The report as tables.
fn render(r: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let bytes = |v: &Value| v.as_u64().map_or("-".to_string(), human_bytes);
    if r["state"] != "available" {
        out += &format!(
            "no GPU: {}\nmodels run on the CPU\n",
            r["reason"].as_str().unwrap_or("the driver reports none")
        );
    } else {
        out += &format!(
            "NVIDIA driver {}, CUDA {}\n",
            text(&r["driver_version"]),
            text(&r["cuda_version"])
        );
        out += &format!(
            "{:<3} {:<28} {:>10} {:>10} {:>10} {:>5} {:>5} {:>7} {}\n",
            "GPU", "NAME", "TOTAL", "USED", "FREE", "UTIL", "TEMP", "POWER", "THROTTLE"
        );
        for d in r["devices"].as_array().into_iter().flatten() {
            let throttle: Vec<String> = d["throttle_reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            out += &format!(
                "{:<3} {:<28} {:>10} {:>10} {:>10} {:>5} {:>5} {:>7} {}\n",
                d["index"],
                text(&d["name"]),
                bytes(&d["memory_total_bytes"]),
                bytes(&d["memory_used_bytes"]),
                bytes(&d["memory_free_bytes"]),
                d["utilization_percent"]
                    .as_u64()
                    .map_or("-".into(), |u| format!("{u}%")),
                d["temperature_c"]
                    .as_u64()
                    .map_or("-".into(), |t| format!("{t}C")),
                d["power_w"]
                    .as_f64()
                    .map_or("-".into(), |p| format!("{p:.0}W")),
                if throttle.is_empty() {
                    "-".to_string()
                } else {
                    throttle.join(",")
                }
            );
            for p in d["processes"].as_array().into_iter().flatten() {
                let who = match (p["ours"].as_bool(), p["model"].as_str()) {
                    (Some(true), Some(model)) => format!("appliance worker: {model}"),
                    (Some(true), None) => "appliance".to_string(),
                    _ => text(&p["name"]),
                };
                out += &format!(
                    "      pid {:<8} {:>10}  {who}\n",
                    p["pid"],
                    bytes(&p["used_bytes"])
                );
            }
        }
    }
    if let Some(reason) = r["daemon"].as_str() {
        out += &format!("daemon {reason}; budget, residents and plan need it\n");
        return out;
    }
    let b = &r["budget"];
    out += &format!(
        "budget: {} committed, {} available, {} reserved{}\n",
        bytes(&b["committed_bytes"]),
        bytes(&b["available_bytes"]),
        bytes(&b["reserve_bytes"]),
        b["limit_bytes"]
            .as_u64()
            .map_or(String::new(), |l| format!(", capped at {}", human_bytes(l)))
    );
    let resident = r["resident"].as_array().cloned().unwrap_or_default();
    if !resident.is_empty() {
        out += "on the GPU:\n";
        for m in &resident {
            out += &format!(
                "  {:<36} {:>3}/{:<3} layers {:>10} {}{}\n",
                text(&m["name"]),
                m["gpu_layers"],
                m["total_layers"],
                bytes(
                    m.get("measured_bytes")
                        .filter(|v| !v.is_null())
                        .unwrap_or(&m["estimate_bytes"])
                ),
                if m["measured_bytes"].is_null() {
                    "(estimated)"
                } else {
                    "(measured)"
                },
                if m["pinned"] == true { " pinned" } else { "" }
            );
        }
    }
    let queue = r["queue"].as_array().cloned().unwrap_or_default();
    out += &format!(
        "load queue: {}\n",
        if queue.is_empty() {
            "empty".to_string()
        } else {
            format!("{} waiting", queue.len())
        }
    );
    for q in &queue {
        out += &format!(
            "  #{} {} needs {} (waiting {} s)\n",
            q["position"],
            text(&q["model"]),
            bytes(&q["needs_bytes"]),
            q["waiting_secs"]
        );
    }
    match r["plan"].as_object() {
        Some(p) => {
            out += "start-up plan:\n";
            for m in p
                .get("models")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out += &format!(
                    "  {:<36} {:<9} {:<7} {:>3}/{:<3} layers  {}{}\n",
                    text(&m["name"]),
                    text(&m["kind"]),
                    text(&m["placement"]),
                    m["gpu_layers"],
                    m["total_layers"],
                    text(&m["reason"]),
                    if m["preload"] == true {
                        " (preloaded)"
                    } else {
                        ""
                    }
                );
            }
            for note in p
                .get("notes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out += &format!("  note: {}\n", text(note));
            }
        }
        None => out += "start-up plan: not made yet\n",
    }
    out
}

/// Makes the start-up plan in the background (reading model headers is I/O), logs
/// it, keeps it for `status` and `/api/v1/gpu`, then preloads the models marked so.
pub(super) fn plan_and_preload(
    config: Arc<Config>,
    engine: Engine,
    gpu: Gpu,
    slot: Arc<parking_lot::RwLock<Option<StartupPlan>>>,
) {
    tokio::spawn(async move {
        let engine_config = engine.config().clone();
        let made = tokio::task::spawn_blocking(move || {
            let candidates = candidates(&config, &engine_config);
            let snapshot = gpu.refresh();
            (
                plan::plan(&snapshot, &engine_config, &candidates),
                candidates,
            )
        })
        .await;
        let Ok((plan, candidates)) = made else {
            tracing::error!("making the start-up plan failed");
            return;
        };
        for m in &plan.models {
            tracing::info!(
                model = %m.name,
                kind = ?m.kind,
                placement = ?m.placement,
                gpu_layers = m.gpu_layers,
                of = m.total_layers,
                vram_mib = m.vram_bytes >> 20,
                ram_mib = m.ram_bytes >> 20,
                preload = m.preload,
                reason = %m.reason,
                "start-up plan"
            );
        }
        for note in &plan.notes {
            tracing::info!(%note, "start-up plan");
        }
        let preload: Vec<ModelSpec> = plan
            .models
            .iter()
            .filter(|m| m.preload)
            .filter_map(|m| candidates.iter().find(|c| c.spec.name == m.name))
            .map(|c| c.spec.clone())
            .collect();
        *slot.write() = Some(plan);
        for spec in preload {
            let keep_alive = engine.config().settings(&spec.name).keep_alive;
            match engine.load(&spec, KeepAliveRequest::set(keep_alive)).await {
                Ok(took) => {
                    tracing::info!(model = %spec.name, load_ms = took.as_millis() as u64, "preloaded")
                }
                Err(e) => tracing::warn!(model = %spec.name, error = %e, "preloading failed"),
            }
        }
    });
}

/// The configured models: the default chat, embedding and speech models and every
/// `[models."name"]`, each with its estimate. Models not installed are left out.
fn candidates(config: &Config, engine: &EngineConfig) -> Vec<Candidate> {
    let registry = Registry::new(config.paths.models_dir.clone());
    let mut names: Vec<String> = vec![
        config.engine.default_model.clone(),
        config.engine.default_embedding_model.clone(),
        config.speech.default_model.clone(),
    ];
    names.extend(config.models.keys().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    let mut out = Vec::new();
    for name in names {
        let spec = if let Ok(info) = registry.find(&name) {
            ModelSpec {
                name: info.name.clone(),
                path: info.path.clone(),
                kind: ModelKind::Chat,
            }
        } else if let Ok(info) = registry.find_embedder(&name) {
            ModelSpec {
                name: info.name,
                path: info.path,
                kind: ModelKind::Embedding,
            }
        } else if let Ok(info) = registry.find_transcriber(&name) {
            ModelSpec {
                name: info.name,
                path: info.path,
                kind: ModelKind::Speech,
            }
        } else {
            tracing::warn!(model = %name, "a configured model is not installed; it is left out of the plan");
            continue;
        };
        let shape = engine.shape(&spec);
        let footprint =
            footprint::estimate(spec.kind, &spec.path, shape).map_err(|e| e.to_string());
        out.push(Candidate { spec, footprint });
    }
    out
}
