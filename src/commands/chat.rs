//! `appliance chat`: a terminal chat against the running daemon, streaming tokens.
//!
//! Interactive sessions are stored server-side as a conversation (its id is printed,
//! so it can be continued with `--conversation` or in the web UI); a one-shot
//! `-p PROMPT` is not stored.

use std::io::Write;

use tokio::io::AsyncBufReadExt;

use serde_json::{Value, json};

use crate::cli::exit;
use crate::client::DaemonClient;
use crate::config::Loaded;

/// Options of `appliance chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Model to chat with (default: engine.default_model).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Ask one question, print the answer and exit.
    #[arg(long, short = 'p', value_name = "PROMPT")]
    pub prompt: Option<String>,
    /// Continue an existing conversation.
    #[arg(long, value_name = "ID", conflicts_with = "prompt")]
    pub conversation: Option<String>,
    /// System prompt for a new conversation.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Most tokens per reply.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
}

/// Runs the chat.
pub fn run(loaded: &Loaded, args: &ChatArgs) -> anyhow::Result<u8> {
    let client = DaemonClient::for_cli(loaded);
    super::block_on(async move {
        match &args.prompt {
            Some(prompt) => one_shot(&client, args, prompt).await,
            None => interactive(&client, args).await,
        }
    })?
}

async fn one_shot(client: &DaemonClient, args: &ChatArgs, prompt: &str) -> anyhow::Result<u8> {
    let mut messages = Vec::new();
    if let Some(system) = &args.system_prompt {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    let mut body = json!({
        "model": args.model.clone().unwrap_or_default(),
        "messages": messages,
        "stream": true,
    });
    if let Some(t) = args.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = args.max_tokens {
        body["max_tokens"] = json!(n);
    }
    let mut failure = None;
    client
        .post_sse("/v1/chat/completions", &body, |event| {
            if let Some(text) = event["choices"][0]["delta"]["content"].as_str() {
                print!("{}", super::output::text(text));
                let _ = std::io::stdout().flush();
            }
            if let Some(message) = event["error"]["message"].as_str() {
                failure = Some(message.to_string());
            }
        })
        .await?;
    println!();
    match failure {
        Some(message) => anyhow::bail!("the reply was interrupted: {message}"),
        None => Ok(exit::OK),
    }
}

async fn interactive(client: &DaemonClient, args: &ChatArgs) -> anyhow::Result<u8> {
    let id = match &args.conversation {
        Some(id) => {
            let existing = client
                .get_json(&format!("/api/v1/conversations/{id}"))
                .await?;
            for m in existing["messages"].as_array().into_iter().flatten() {
                let who = if m["role"] == "user" { ">" } else { " " };
                println!(
                    "{who} {}",
                    super::output::text(m["content"].as_str().unwrap_or_default())
                );
            }
            id.clone()
        }
        None => {
            let mut body = json!({"model": args.model.clone().unwrap_or_default()});
            if let Some(system) = &args.system_prompt {
                body["system_prompt"] = json!(system);
            }
            let mut settings = serde_json::Map::new();
            if let Some(t) = args.temperature {
                settings.insert("temperature".into(), json!(t));
            }
            if let Some(n) = args.max_tokens {
                settings.insert("max_tokens".into(), json!(n));
            }
            if !settings.is_empty() {
                body["settings"] = Value::Object(settings);
            }
            let created = client.post_json("/api/v1/conversations", &body).await?;
            created["id"].as_str().unwrap_or_default().to_string()
        }
    };
    eprintln!("conversation {id} — type a message; /exit or Ctrl-D to quit");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next_line().await? else {
            eprintln!();
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/exit" || line == "/quit" {
            break;
        }
        let mut failure: Option<Value> = None;
        let body = json!({"content": line, "stream": true});
        let result = client
            .post_sse(
                &format!("/api/v1/conversations/{id}/messages"),
                &body,
                |event| match event["type"].as_str() {
                    Some("token") => {
                        print!(
                            "{}",
                            super::output::text(event["text"].as_str().unwrap_or_default())
                        );
                        let _ = std::io::stdout().flush();
                    }
                    Some("error") => failure = Some(event["error"].clone()),
                    _ => {}
                },
            )
            .await;
        println!();
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
        if let Some(error) = failure {
            eprintln!(
                "error: {}",
                error["message"].as_str().unwrap_or("the reply failed")
            );
        }
    }
    Ok(exit::OK)
}
