//! `appliance docs …`: documents through the running daemon's API (as any client
//! would): add files with a progress bar per file (upload, then indexing), list,
//! remove, search.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output;
use crate::cli::exit;
use crate::client::{ClientError, DaemonClient};
use crate::config::Loaded;

/// `appliance docs …`
#[derive(Debug, clap::Subcommand)]
pub enum DocsCommand {
    /// Add files to a collection (created if missing) and wait until they are indexed.
    Add {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The collection's name.
        #[arg(long, short = 'c')]
        collection: String,
        /// Return once uploaded, without waiting for indexing.
        #[arg(long)]
        no_wait: bool,
    },
    /// List collections, or the documents of one.
    List {
        /// The collection's name.
        #[arg(long, short = 'c')]
        collection: Option<String>,
    },
    /// Remove a document by id.
    Rm {
        /// Document ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Search documents (your collections and shared ones, or one collection).
    Search {
        /// The query.
        query: String,
        /// The collection's name.
        #[arg(long, short = 'c')]
        collection: Option<String>,
        /// Results.
        #[arg(long, default_value_t = 5)]
        limit: u32,
    },
}

/// A client of the daemon this configuration describes (see
/// [`DaemonClient::for_cli`]: TCP with a key, else the Unix socket when usable).
pub fn client(loaded: &Loaded) -> DaemonClient {
    DaemonClient::for_cli(loaded)
}

/// Runs a `docs` command.
pub fn run(loaded: &Loaded, command: &DocsCommand) -> anyhow::Result<u8> {
    let client = client(loaded);
    super::block_on(async move {
        match command {
            DocsCommand::Add {
                files,
                collection,
                no_wait,
            } => add(&client, files, collection, *no_wait).await,
            DocsCommand::List { collection } => list(&client, collection.as_deref()).await,
            DocsCommand::Rm { ids } => {
                for id in ids {
                    client.delete(&format!("/api/v1/documents/{id}")).await?;
                    println!("removed document {id}");
                }
                Ok(exit::OK)
            }
            DocsCommand::Search {
                query,
                collection,
                limit,
            } => search(&client, query, collection.as_deref(), *limit).await,
        }
    })?
}

/// The id of the collection named `name` (the caller's own first), if any.
async fn find_collection(client: &DaemonClient, name: &str) -> Result<Option<i64>, ClientError> {
    let list = client.get_json("/api/v1/collections").await?;
    let all = list["collections"].as_array().cloned().unwrap_or_default();
    let named: Vec<&Value> = all.iter().filter(|c| c["name"] == name).collect();
    let best = named
        .iter()
        .find(|c| c["writable"] == true)
        .or(named.first());
    Ok(best.and_then(|c| c["id"].as_i64()))
}

async fn add(
    client: &DaemonClient,
    files: &[PathBuf],
    collection: &str,
    no_wait: bool,
) -> anyhow::Result<u8> {
    for file in files {
        if !file.is_file() {
            anyhow::bail!("{} is not a readable file", file.display());
        }
    }
    let id = match find_collection(client, collection).await? {
        Some(id) => id,
        None => {
            let created = client
                .post_json("/api/v1/collections", &json!({ "name": collection }))
                .await?;
            eprintln!("created collection `{}`", output::text(collection));
            created["id"].as_i64().unwrap_or_default()
        }
    };
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:30!} {bar:30} {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut pending = Vec::new();
    let mut failures = 0;
    // Without a terminal the bars are hidden: say each outcome as a plain line.
    let plain = bars.is_hidden();
    let done = |bar: &ProgressBar, name: &str, message: String, failed: bool| {
        if plain {
            eprintln!("{}: {message}", output::text(name));
        }
        if failed {
            bar.abandon_with_message(message);
        } else {
            bar.finish_with_message(message);
        }
    };
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bar = bars.add(ProgressBar::new(100));
        bar.set_style(style.clone());
        bar.set_prefix(output::text(&name).into_owned());
        bar.set_message("uploading");
        let upload_bar = bar.clone();
        let answer = client
            .upload(
                &format!("/api/v1/collections/{id}/documents"),
                file,
                move |sent, total| {
                    upload_bar.set_position(sent * 100 / total.max(1));
                },
            )
            .await;
        match answer {
            Ok(answer) => {
                let doc = answer["documents"][0].clone();
                let duplicate = answer["duplicates"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty());
                if duplicate {
                    let message = format!("already in the collection (document {})", doc["id"]);
                    done(&bar, &name, message, false);
                } else if no_wait {
                    done(
                        &bar,
                        &name,
                        format!("uploaded (document {})", doc["id"]),
                        false,
                    );
                } else {
                    bar.set_position(0);
                    bar.set_message("queued for indexing");
                    pending.push((bar, name, doc));
                }
            }
            Err(e) => {
                failures += 1;
                done(
                    &bar,
                    &name,
                    format!("failed: {}", output::text(&e.to_string())),
                    true,
                );
            }
        }
    }
    for (bar, name, doc) in pending {
        let Some(job) = doc["job_id"].as_i64() else {
            done(&bar, &name, "uploaded".into(), false);
            continue;
        };
        loop {
            let state = client.get_json(&format!("/api/v1/jobs/{job}")).await?;
            let progress = state["progress"].as_f64().unwrap_or(0.0);
            bar.set_position((progress * 100.0) as u64);
            match state["state"].as_str().unwrap_or("") {
                "done" => {
                    let doc = client
                        .get_json(&format!("/api/v1/documents/{}", doc["id"]))
                        .await?;
                    let message = format!(
                        "indexed: {} passages (document {})",
                        doc["chunks"], doc["id"]
                    );
                    done(&bar, &name, message, false);
                    break;
                }
                "failed" | "cancelled" => {
                    failures += 1;
                    let doc = client
                        .get_json(&format!("/api/v1/documents/{}", doc["id"]))
                        .await?;
                    let why = doc["error"]
                        .as_str()
                        .or(state["error"].as_str())
                        .unwrap_or("failed");
                    done(&bar, &name, format!("failed: {}", output::text(why)), true);
                    break;
                }
                _ => {
                    let note = state["note"].as_str().unwrap_or("");
                    bar.set_message(
                        output::text(if note.is_empty() { "waiting" } else { note }).into_owned(),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(if failures == 0 {
        exit::OK
    } else {
        exit::FAILURE
    })
}

async fn list(client: &DaemonClient, collection: Option<&str>) -> anyhow::Result<u8> {
    match collection {
        None => {
            let list = client.get_json("/api/v1/collections").await?;
            println!(
                "{:>6}  {:<30} {:>9} {:>9}  owner",
                "id", "name", "documents", "passages"
            );
            for c in list["collections"].as_array().into_iter().flatten() {
                println!(
                    "{:>6}  {:<30} {:>9} {:>9}  {}{}",
                    c["id"],
                    output::text(c["name"].as_str().unwrap_or("")),
                    c["documents"],
                    c["chunks"],
                    output::text(c["owner"].as_str().unwrap_or("-")),
                    if c["shared"] == true { " (shared)" } else { "" }
                );
            }
        }
        Some(name) => {
            let Some(id) = find_collection(client, name).await? else {
                anyhow::bail!("no collection named `{}`", output::text(name));
            };
            let docs = client
                .get_json(&format!("/api/v1/collections/{id}/documents"))
                .await?;
            println!(
                "{:>6}  {:<40} {:<9} {:<9} {:>8}",
                "id", "name", "format", "state", "passages"
            );
            for d in docs["documents"].as_array().into_iter().flatten() {
                println!(
                    "{:>6}  {:<40} {:<9} {:<9} {:>8}{}",
                    d["id"],
                    output::text(d["name"].as_str().unwrap_or("")),
                    d["media_type"].as_str().unwrap_or(""),
                    d["state"].as_str().unwrap_or(""),
                    d["chunks"],
                    d["error"]
                        .as_str()
                        .map(|e| format!("  ({})", output::text(e)))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(exit::OK)
}

async fn search(
    client: &DaemonClient,
    query: &str,
    collection: Option<&str>,
    limit: u32,
) -> anyhow::Result<u8> {
    let mut body = json!({ "query": query, "limit": limit });
    if let Some(name) = collection {
        let Some(id) = find_collection(client, name).await? else {
            anyhow::bail!("no collection named `{}`", output::text(name));
        };
        body["collections"] = json!([id]);
    }
    let results = client.post_json("/api/v1/search", &body).await?;
    let hits = results["results"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        println!("no relevant passages found");
    }
    for (i, hit) in hits.iter().enumerate() {
        let page = hit["page"]
            .as_i64()
            .map(|p| format!(", page {p}"))
            .unwrap_or_default();
        println!(
            "{}. {}{} (document {}, score {:.4})",
            i + 1,
            output::text(hit["document_name"].as_str().unwrap_or("")),
            page,
            hit["document_id"],
            hit["score"].as_f64().unwrap_or(0.0)
        );
        let text: String = hit["text"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        println!(
            "   {}\n",
            output::text(&text.split_whitespace().collect::<Vec<_>>().join(" "))
        );
    }
    Ok(exit::OK)
}
