//! Accounts and credentials, independent of HTTP: roles, scopes, password hashing,
//! API key and session token formats, peer authentication on the Unix socket
//! ([`peer`]), and the [`Principal`] a request acts as.
//!
//! Secrets are never stored: passwords as Argon2id hashes, API key secrets and session
//! tokens as sha256 digests (they are 256-bit random values, so a fast hash is safe).
//! Hashing passwords is slow on purpose: callers on the async runtime must run
//! [`hash_password`] and [`verify_password`] on a blocking thread.

pub mod hasher;
pub mod peer;
pub mod throttle;

use std::fmt;
use std::str::FromStr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including other users' resources and administration.
    Admin,
    /// Their own resources.
    User,
    /// Can read their own resources and list models, but not generate or change anything.
    Readonly,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Readonly => "readonly",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "readonly" => Ok(Role::Readonly),
            other => Err(format!("unknown role `{other}` (admin, user or readonly)")),
        }
    }
}

/// What an API key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Chat and text completion, conversations.
    Chat,
    /// Embeddings.
    Embeddings,
    /// Speech to text.
    Audio,
    /// Image generation.
    Images,
    /// Documents and retrieval.
    Documents,
    /// Administration (also requires the admin role).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::Chat,
        Scope::Embeddings,
        Scope::Audio,
        Scope::Images,
        Scope::Documents,
        Scope::Admin,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Embeddings => "embeddings",
            Scope::Audio => "audio",
            Scope::Images => "images",
            Scope::Documents => "documents",
            Scope::Admin => "admin",
        }
    }

    /// Parses a comma- or space-separated list; `all` means every scope.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for word in text.split([',', ' ']).filter(|w| !w.is_empty()) {
            if word == "all" {
                scopes.extend(Scope::ALL);
                continue;
            }
            scopes.push(word.parse()?);
        }
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        Ok(scopes)
    }

    /// Space-separated, as stored.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope `{s}` (chat, embeddings, audio, images, documents, admin, all)"
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key with these scopes.
    ApiKey {
        /// The key's public id.
        id: String,
        /// What it may do.
        scopes: Vec<Scope>,
        /// When it expires (RFC 3339), if it does.
        expires_at: Option<String>,
    },
    /// A browser session (all of the user's permissions; CSRF-checked).
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
    /// No credential: a process on this host, on the daemon's Unix socket, that the
    /// kernel says runs as this Unix user (all of the account's permissions, like a
    /// session; see [`peer`]).
    Peer {
        /// The connecting process's user id.
        uid: u32,
    },
}

impl Credential {
    /// How the caller authenticated, as `GET /api/v1/auth/me` and the audit log name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApiKey { .. } => "api_key",
            Credential::Session { .. } => "session",
            Credential::Peer { .. } => "peer",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: i64,
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// How they authenticated.
    pub credential: Credential,
}

impl Principal {
    /// Whether the credential allows `scope` (sessions carry every scope).
    pub fn has_scope(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::ApiKey { scopes, .. } => scopes.contains(&scope),
            Credential::Session { .. } | Credential::Peer { .. } => true,
        }
    }

    /// Admin role and, for keys, the admin scope.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin && self.has_scope(Scope::Admin)
    }

    /// The owner filter for resource queries: `None` (everything) for admins.
    pub fn owner_filter(&self) -> Option<i64> {
        (!self.is_admin()).then_some(self.user_id)
    }

    /// The user id new resources are owned by (`None` for the anonymous principal of
    /// a daemon running with authentication disabled).
    pub fn owner_id(&self) -> Option<i64> {
        (self.user_id > 0).then_some(self.user_id)
    }

    /// The principal of every request when authentication is disabled (loopback only).
    pub fn anonymous_admin() -> Principal {
        Principal {
            user_id: 0,
            name: "anonymous".into(),
            role: Role::Admin,
            credential: Credential::ApiKey {
                id: "auth-disabled".into(),
                scopes: Scope::ALL.to_vec(),
                expires_at: None,
            },
        }
    }
}

/// Hashes a password with Argon2id (slow: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored hash (slow: call from a blocking thread).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the same time as a real check, for unknown user names, so response timing
/// does not reveal which names exist.
pub fn verify_against_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    let _ = verify_password(hash, password);
}

/// Checks a new password's length.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    if n > 256 {
        return Err("the password must have at most 256 characters".into());
    }
    Ok(())
}

/// Checks a user name: 1–64 letters, digits, `.`, `_`, `-`, `@`, and not the built-in
/// [`peer::LOCAL_ADMIN`].
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.eq_ignore_ascii_case(peer::LOCAL_ADMIN) {
        return Err(format!(
            "`{}` is the built-in account of the host's administrators on the Unix socket; choose another name",
            peer::LOCAL_ADMIN
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err("user names have 1-64 letters, digits, '.', '_', '-' or '@'".into())
    }
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    hex(&bytes)
}

/// sha256 of `text` as lower-case hex.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

use crate::hashing::hex;

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new API key: `(public id, full key shown once, secret hash to store)`.
pub fn new_api_key() -> (String, String, String) {
    let id = random_hex(6);
    let secret = random_hex(32);
    let key = format!("apl_{id}_{secret}");
    (id, key, sha256_hex(&secret))
}

/// Splits `apl_<id>_<secret>` into id and secret.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("apl_")?;
    let (id, secret) = rest.split_once('_')?;
    let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id, 12) && hexy(secret, 64)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsE"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn api_keys_round_trip_and_malformed_keys_are_refused() {
        let (id, key, hash) = new_api_key();
        let (pid, secret) = parse_api_key(&key).unwrap();
        assert_eq!(pid, id);
        assert_eq!(sha256_hex(secret), hash);
        for bad in [
            "",
            "apl_",
            "sk-123",
            &key[..key.len() - 1],
            &key.replace("apl_", "apx_"),
        ] {
            assert!(parse_api_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_parse_and_principals_check_them() {
        assert_eq!(
            Scope::parse_list("chat,admin").unwrap(),
            [Scope::Chat, Scope::Admin]
        );
        assert_eq!(Scope::parse_list("all").unwrap().len(), 6);
        assert!(Scope::parse_list("chat,wizardry").is_err());
        assert!(Scope::parse_list("").is_err());
        let p = Principal {
            user_id: 1,
            name: "a".into(),
            role: Role::Admin,
            credential: Credential::ApiKey {
                id: "x".into(),
                scopes: vec![Scope::Embeddings],
                expires_at: None,
            },
        };
        assert!(!p.has_scope(Scope::Chat));
        assert!(
            !p.is_admin(),
            "an admin's key without the admin scope is not admin"
        );
        assert_eq!(p.owner_filter(), Some(1));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_user_name("alice@example").is_ok());
        assert!(check_user_name("a b").is_err());
        assert!(check_user_name("../x").is_err());
        assert!(check_user_name("Local-Admin").is_err(), "reserved");
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }
}
