//! `appliance users …`, `appliance keys …`, `appliance audit`: account administration
//! on the host. These open the database directly (whoever can read it already holds
//! every secret's hash), which is also how the first administrator is created without
//! any credentials; each change is written to the audit log as done by `cli`.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::auth::{self, Role, Scope};
use crate::cli::{AuditArgs, KeysCommand, UsageArgs, UsersCommand, exit};
use crate::config::Loaded;
use crate::store::accounts::AuditEntry;
use crate::store::conversations::now;
use crate::store::usage::LimitOverrides;
use crate::store::{Store, StoreOptions};

use super::output::line;

fn open(loaded: &Loaded) -> anyhow::Result<Store> {
    let config = &loaded.config;
    fs_err::create_dir_all(&config.paths.data_dir)?;
    Store::open(
        &config.database_path(),
        StoreOptions::new(Duration::from_millis(config.store.busy_timeout_ms), 1),
    )
    .with_context(|| format!("opening {}", config.database_path().display()))
}

async fn audit(
    store: &Store,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    store
        .audit(AuditEntry {
            id: 0,
            at: now(),
            actor: Some("cli".into()),
            action: action.into(),
            target: Some(target.into()),
            ip: None,
            success: true,
            detail,
        })
        .await?;
    Ok(())
}

/// Writes one audit entry for a CLI action that does not otherwise open the store.
pub fn record(
    loaded: &Loaded,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let store = open(loaded)?;
    super::block_on(async move { audit(&store, action, target, detail).await })?
}

/// The password from stdin (`--password-stdin`), or a new random one that is printed.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let text = text.trim_end_matches(['\n', '\r']).to_string();
        auth::check_password(&text).map_err(anyhow::Error::msg)?;
        Ok((text, false))
    } else {
        Ok((auth::random_hex(12), true))
    }
}

async fn user_id(store: &Store, name: &str) -> anyhow::Result<crate::store::accounts::User> {
    match store.user_by_name(name.to_string()).await? {
        Some((user, _)) => Ok(user),
        None => bail!("no user named `{name}`"),
    }
}

/// Runs a `users` subcommand.
pub fn users(loaded: &Loaded, command: &UsersCommand) -> anyhow::Result<u8> {
    let store = open(loaded)?;
    super::block_on(async move {
        match command {
            UsersCommand::List => {
                println!("{:<24} {:<9} {:<9} CREATED", "NAME", "ROLE", "STATE");
                for u in store.list_users().await? {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!(
                        "{:<24} {:<9} {:<9} {}",
                        line(&u.name),
                        u.role.as_str(),
                        state,
                        u.created_at
                    );
                }
            }
            UsersCommand::Add {
                name,
                admin,
                role,
                password_stdin,
            } => {
                auth::check_user_name(name).map_err(anyhow::Error::msg)?;
                let role: Role = match (admin, role) {
                    (true, _) => Role::Admin,
                    (false, Some(r)) => r.parse().map_err(anyhow::Error::msg)?,
                    (false, None) => Role::User,
                };
                let (password, generated) = password(*password_stdin)?;
                let hash = tokio::task::spawn_blocking(move || {
                    auth::hash_password(&password).map(|h| (h, password))
                })
                .await?
                .map_err(anyhow::Error::msg)?;
                let user = store.create_user(name.clone(), hash.0, role, false).await?;
                audit(
                    &store,
                    "user.create",
                    &user.name,
                    serde_json::json!({"role": role.as_str()}),
                )
                .await?;
                println!("created {} ({})", user.name, role.as_str());
                if generated {
                    println!("password: {}", hash.1);
                    println!(
                        "(shown once; change it with `appliance users passwd {}` or in the web UI)",
                        user.name
                    );
                }
            }
            UsersCommand::Disable { name } | UsersCommand::Enable { name } => {
                let disable = matches!(command, UsersCommand::Disable { .. });
                let user = user_id(&store, name).await?;
                store
                    .update_user(user.id, None, None, Some(disable))
                    .await?;
                audit(
                    &store,
                    "user.update",
                    &user.name,
                    serde_json::json!({"disabled": disable}),
                )
                .await?;
                println!(
                    "{} {}",
                    if disable { "disabled" } else { "enabled" },
                    user.name
                );
            }
            UsersCommand::Delete { name } => {
                let user = user_id(&store, name).await?;
                store.delete_user(user.id).await?;
                audit(&store, "user.delete", &user.name, serde_json::json!({})).await?;
                println!(
                    "deleted {} with their keys, sessions and conversations",
                    user.name
                );
            }
            UsersCommand::Limits {
                name,
                requests_per_minute,
                daily_tokens,
                daily_audio_minutes,
                daily_images,
                clear,
            } => {
                let user = user_id(&store, name).await?;
                let mut limits = if *clear {
                    LimitOverrides::default()
                } else {
                    store.user_limits(user.id).await?
                };
                limits.requests_per_minute = requests_per_minute.or(limits.requests_per_minute);
                limits.daily_generated_tokens = daily_tokens.or(limits.daily_generated_tokens);
                limits.daily_audio_minutes = daily_audio_minutes.or(limits.daily_audio_minutes);
                limits.daily_images = daily_images.or(limits.daily_images);
                store.set_user_limits(user.id, limits).await?;
                audit(&store, "user.limits", &user.name, serde_json::json!(limits)).await?;
                println!("limits of {}: {}", user.name, serde_json::json!(limits));
                println!("(a running daemon applies them within 30 s)");
            }
            UsersCommand::Passwd {
                name,
                password_stdin,
            } => {
                let user = user_id(&store, name).await?;
                if user.is_local_admin() {
                    bail!(
                        "the built-in local-admin account has no password: root and the daemon's user reach it on the Unix socket"
                    );
                }
                let (password, generated) = password(*password_stdin)?;
                let shown = password.clone();
                let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
                    .await?
                    .map_err(anyhow::Error::msg)?;
                store.update_user(user.id, Some(hash), None, None).await?;
                audit(
                    &store,
                    "user.update",
                    &user.name,
                    serde_json::json!({"password_reset": true}),
                )
                .await?;
                println!(
                    "password of {} changed; their sessions were ended",
                    user.name
                );
                if generated {
                    println!("password: {shown}");
                }
            }
        }
        anyhow::Ok(exit::OK)
    })?
}

/// Runs a `keys` subcommand.
pub fn keys(loaded: &Loaded, command: &KeysCommand) -> anyhow::Result<u8> {
    let store = open(loaded)?;
    super::block_on(async move {
        match command {
            KeysCommand::Create {
                owner: user,
                name,
                scopes,
                expires_in_days,
            } => {
                let owner = user_id(&store, user).await?;
                if owner.is_local_admin() {
                    bail!(
                        "the built-in local-admin account cannot own API keys (root and the daemon's user reach it on the Unix socket without one); create the key for a named user"
                    );
                }
                let scopes = Scope::parse_list(scopes).map_err(anyhow::Error::msg)?;
                if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control)
                {
                    bail!("the key name needs 1-100 characters and no control characters");
                }
                if scopes.contains(&Scope::Admin) && owner.role != Role::Admin {
                    bail!("only administrators' keys can have the `admin` scope");
                }
                let expires_at = expires_in_days.map(|days| {
                    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days as i64))
                        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string()
                });
                let (id, key, hash) = auth::new_api_key();
                store
                    .create_api_key(
                        id.clone(),
                        owner.id,
                        name.clone(),
                        hash,
                        scopes.clone(),
                        expires_at,
                    )
                    .await?;
                audit(
                    &store,
                    "key.create",
                    &id,
                    serde_json::json!({"owner": owner.name, "scopes": Scope::join(&scopes)}),
                )
                .await?;
                // Only the key on stdout, so scripts can capture it.
                println!("{key}");
                eprintln!(
                    "created key {id} for {} with scopes {} (shown once)",
                    owner.name,
                    Scope::join(&scopes)
                );
            }
            KeysCommand::List { owner: user } => {
                let owner = match user {
                    Some(name) => Some(user_id(&store, name).await?.id),
                    None => None,
                };
                println!(
                    "{:<14} {:<16} {:<20} {:<34} {:<9} LAST USED",
                    "ID", "USER", "NAME", "SCOPES", "STATE"
                );
                for k in store.list_api_keys(owner).await? {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<14} {:<16} {:<20} {:<34} {:<9} {}",
                        line(&k.id),
                        line(&k.user_name),
                        line(&k.name),
                        Scope::join(&k.scopes),
                        state,
                        k.last_used_at.unwrap_or_else(|| "never".into())
                    );
                }
            }
            KeysCommand::Revoke { id } => {
                let key = store.revoke_api_key(id.clone(), None).await?;
                audit(
                    &store,
                    "key.revoke",
                    id,
                    serde_json::json!({"owner": key.user_name}),
                )
                .await?;
                println!("revoked {id} ({})", key.user_name);
            }
        }
        anyhow::Ok(exit::OK)
    })?
}

/// `appliance usage`: requests and tokens per user and day.
pub fn usage(loaded: &Loaded, args: &UsageArgs) -> anyhow::Result<u8> {
    let store = open(loaded)?;
    super::block_on(async move {
        let owner = match &args.owner {
            Some(name) => Some(user_id(&store, name).await?.id),
            None => None,
        };
        let since = (jiff::Timestamp::now()
            - jiff::SignedDuration::from_hours(24 * (args.days.max(1) as i64 - 1)))
        .strftime("%Y-%m-%d")
        .to_string();
        println!(
            "{:<10} {:<20} {:>9} {:>13} {:>16}",
            "DAY", "USER", "REQUESTS", "PROMPT TOKENS", "GENERATED TOKENS"
        );
        for r in store.usage(owner, since).await? {
            println!(
                "{:<10} {:<20} {:>9} {:>13} {:>16}",
                r.day,
                line(&r.user_name),
                r.requests,
                r.prompt_tokens,
                r.generated_tokens
            );
        }
        anyhow::Ok(exit::OK)
    })?
}

/// `appliance audit`: the newest audit entries.
pub fn audit_log(loaded: &Loaded, args: &AuditArgs) -> anyhow::Result<u8> {
    let store = open(loaded)?;
    super::block_on(async move {
        for e in store.audit_log(args.limit, None).await? {
            println!(
                "{}  {:<7} {:<16} {:<16} {:<24} {:<15} {}",
                line(&e.at),
                if e.success { "ok" } else { "FAILED" },
                line(&e.action),
                line(e.actor.as_deref().unwrap_or("-")),
                line(e.target.as_deref().unwrap_or("-")),
                line(e.ip.as_deref().unwrap_or("-")),
                line(&e.detail.to_string())
            );
        }
        anyhow::Ok(exit::OK)
    })?
}
