//! Merging the configuration layers and remembering where each value came from.
//!
//! Every layer is reduced to a list of `section.key = value` settings. A setting is
//! accepted only if the key exists in the compiled defaults and the value has the
//! default's TOML type; then the merged table is deserialised into [`Config`] and
//! range-checked. When that fails, the layers are replayed one at a time so the error
//! names the layer (file, variable or flag) that introduced the bad value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::paths::{self, Layout};
use super::{
    CliOverrides, Config, DEFAULT_TOML, ENV_CONFIG_FILE, ENV_LAYOUT, ENV_RUST_LOG, Environment,
    Loaded, Source,
};

/// Why a configuration could not be loaded. Each message names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key that no setting has.
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey {
        /// The file, variable or flag.
        origin: String,
        /// The offending key.
        key: String,
        /// " (did you mean …?)" or empty.
        hint: String,
    },
    /// A value of the wrong type or out of range.
    #[error("{origin}: bad value for `{key}`: expected {expected}, found {found}")]
    BadValue {
        /// The file, variable or flag.
        origin: String,
        /// The key.
        key: String,
        /// What the key takes.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A value the setting's type or range rejects.
    #[error("{origin}: bad value {found} for `{key}`: {reason}")]
    Rejected {
        /// The file, variable or flag.
        origin: String,
        /// The key.
        key: String,
        /// What was given.
        found: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Any other invalid choice (e.g. an unknown layout name).
    #[error("{0}")]
    Invalid(String),
}

/// One layer's settings, in order, each with its exact source.
type LayerSettings = Vec<(String, Value, Source)>;

pub(super) fn load(cli: &CliOverrides, env: &Environment) -> Result<Loaded, ConfigError> {
    let layout = choose_layout(cli, env)?;
    let defaults: Table = DEFAULT_TOML
        .parse()
        .expect("the embedded default.toml is valid TOML (pinned by a test)");
    let mut known = BTreeMap::new();
    flatten(&defaults, "", &mut known);

    let file = choose_file(cli, env, layout);
    let mut layers = Vec::new();
    let mut models = None;
    if let Some(path) = &file {
        let (settings, per_model) = file_layer(path, &known)?;
        layers.push(settings);
        models = per_model.map(|table| (table, path.display().to_string()));
    }
    layers.push(env_layer(env, &known)?);
    layers.push(flag_layer(cli, &known)?);

    let mut values: BTreeMap<String, (Value, Source)> = known
        .iter()
        .map(|(k, v)| (k.clone(), (v.clone(), Source::Default)))
        .collect();
    for layer in &layers {
        for (key, value, source) in layer {
            values.insert(key.clone(), (value.clone(), source.clone()));
        }
        // Deserialise after each layer so an invalid value is blamed on its layer.
        check(&values, models.as_ref())?;
    }
    fill_paths(&mut values, layout, env);
    let config = check(&values, models.as_ref())?;
    Ok(Loaded {
        config,
        layout,
        file,
        values,
    })
}

fn choose_layout(cli: &CliOverrides, env: &Environment) -> Result<Layout, ConfigError> {
    if let Some(layout) = cli.layout {
        return Ok(layout);
    }
    match env.get(ENV_LAYOUT) {
        Some(value) => Layout::parse(value).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "env {ENV_LAYOUT}: expected `user` or `system`, found `{value}`"
            ))
        }),
        None => Ok(Layout::detect()),
    }
}

/// `--config` wins over `APPLIANCE_CONFIG`; both must exist. The layout's default file
/// is read only if it exists.
fn choose_file(cli: &CliOverrides, env: &Environment, layout: Layout) -> Option<PathBuf> {
    if let Some(path) = &cli.config_file {
        return Some(path.clone());
    }
    if let Some(path) = env.get(ENV_CONFIG_FILE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    paths::default_config_file(layout).filter(|p| p.exists())
}

/// A file's settings, and its `[models."name"]` tables (which only a file can set).
fn file_layer(
    path: &Path,
    known: &BTreeMap<String, Value>,
) -> Result<(LayerSettings, Option<Value>), ConfigError> {
    let text = fs_err::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
    let origin = path.display().to_string();
    let source = Source::File(path.to_path_buf());
    let models = table.remove("models");
    if let Some(models) = &models {
        let tables = models
            .as_table()
            .is_some_and(|t| t.values().all(Value::is_table));
        if !tables {
            return Err(ConfigError::BadValue {
                origin,
                key: "models".into(),
                expected: "tables such as [models.\"name\"]".into(),
                found: models.to_string(),
            });
        }
    }
    let mut flat = BTreeMap::new();
    flatten(&table, "", &mut flat);
    let mut settings = Vec::new();
    for (key, value) in flat {
        let default = lookup(known, &key, &origin)?;
        if !same_type(default, &value) {
            return Err(ConfigError::BadValue {
                origin,
                key,
                expected: type_name(default).to_string(),
                found: format!("{} {}", type_name(&value), value),
            });
        }
        settings.push((key, value, source.clone()));
    }
    Ok((settings, models))
}

/// `APPLIANCE_SECTION_KEY` for every known key, plus `RUST_LOG` for `log.level`.
/// Any other `APPLIANCE_*` variable is an error: a typo must not be silently ignored.
fn env_layer(
    env: &Environment,
    known: &BTreeMap<String, Value>,
) -> Result<LayerSettings, ConfigError> {
    let by_var: BTreeMap<String, &String> = known.keys().map(|k| (env_name(k), k)).collect();
    let mut settings = Vec::new();
    for (var, raw) in &env.vars {
        if !var.starts_with("APPLIANCE_") || var == ENV_CONFIG_FILE || var == ENV_LAYOUT {
            continue;
        }
        let Some(key) = by_var.get(var) else {
            let hint = suggest(var, by_var.keys().map(String::as_str));
            return Err(ConfigError::UnknownKey {
                origin: format!("env {var}"),
                key: var.clone(),
                hint,
            });
        };
        let value = parse_as(&known[*key], raw, &format!("env {var}"), key)?;
        settings.push(((*key).clone(), value, Source::Env(var.clone())));
    }
    // RUST_LOG is applied last within this layer: it is the more specific knob.
    if let Some(filter) = env.get(ENV_RUST_LOG).filter(|s| !s.trim().is_empty()) {
        settings.push((
            "log.level".to_string(),
            Value::String(filter.to_string()),
            Source::Env(ENV_RUST_LOG.to_string()),
        ));
    }
    Ok(settings)
}

fn flag_layer(
    cli: &CliOverrides,
    known: &BTreeMap<String, Value>,
) -> Result<LayerSettings, ConfigError> {
    let mut settings = Vec::new();
    for (key, raw, flag) in &cli.settings {
        let origin = format!("flag {flag}");
        let default = lookup(known, key, &origin)?;
        let value = parse_as(default, raw, &origin, key)?;
        settings.push((key.clone(), value, Source::Flag(flag.clone())));
    }
    Ok(settings)
}

/// Empty path settings are derived from the layout; `models_dir` from the data dir.
fn fill_paths(values: &mut BTreeMap<String, (Value, Source)>, layout: Layout, env: &Environment) {
    let dirs = paths::default_dirs(layout, env);
    fill_path(values, "paths.data_dir", dirs.data_dir, layout);
    fill_path(values, "paths.log_dir", dirs.log_dir, layout);
    fill_path(values, "paths.runtime_dir", dirs.runtime_dir, layout);
    let data_dir = PathBuf::from(values["paths.data_dir"].0.as_str().unwrap_or_default());
    fill_path(values, "paths.models_dir", data_dir.join("models"), layout);
}

fn fill_path(
    values: &mut BTreeMap<String, (Value, Source)>,
    key: &str,
    default: PathBuf,
    layout: Layout,
) {
    let entry = values.get_mut(key).expect("path keys are in default.toml");
    if entry.0.as_str().is_some_and(str::is_empty) {
        *entry = (
            Value::String(default.display().to_string()),
            Source::Layout(layout),
        );
    }
}

/// Deserialises and validates the merged values, blaming the offending key's source.
fn check(
    values: &BTreeMap<String, (Value, Source)>,
    models: Option<&(Value, String)>,
) -> Result<Config, ConfigError> {
    let mut table = Table::new();
    if let Some((models, _)) = models {
        table.insert("models".into(), models.clone());
    }
    for (key, (value, _)) in values {
        let (section, name) = key.split_once('.').expect("keys are section.key");
        table
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("sections are tables")
            .insert(name.to_string(), value.clone());
    }
    let origin_of = |key: &str| -> String {
        if let (true, Some((_, file))) = (key.starts_with("models."), models) {
            return file.clone();
        }
        values
            .get(key)
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| "configuration".to_string())
    };
    let config: Config = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        // toml appends "in `key`" on a second line; the key is named already.
        let reason = e.inner().to_string();
        ConfigError::Rejected {
            origin: origin_of(&key),
            found: values
                .get(&key)
                .map(|(v, _)| v.to_string())
                .unwrap_or_else(|| "(missing)".to_string()),
            reason: reason.lines().next().unwrap_or_default().to_string(),
            key,
        }
    })?;
    if let (Err(reason), Some((_, file))) = (config.validate_models(), models) {
        return Err(ConfigError::Invalid(format!("{file}: {reason}")));
    }
    config
        .validate()
        .map_err(|(key, expected)| ConfigError::Rejected {
            origin: origin_of(key),
            key: key.to_string(),
            found: values[key].0.to_string(),
            reason: format!("expected {expected}"),
        })?;
    Ok(config)
}

fn lookup<'a>(
    known: &'a BTreeMap<String, Value>,
    key: &str,
    origin: &str,
) -> Result<&'a Value, ConfigError> {
    known.get(key).ok_or_else(|| ConfigError::UnknownKey {
        origin: origin.to_string(),
        key: key.to_string(),
        hint: suggest(key, known.keys().map(String::as_str)),
    })
}

/// Parses a string from the environment or a flag as the default's type.
fn parse_as(default: &Value, raw: &str, origin: &str, key: &str) -> Result<Value, ConfigError> {
    let bad = || ConfigError::BadValue {
        origin: origin.to_string(),
        key: key.to_string(),
        expected: type_name(default).to_string(),
        found: format!("`{raw}`"),
    };
    Ok(match default {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| bad())?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| bad())?),
        Value::Boolean(_) => Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad()),
        }),
        Value::Array(_) | Value::Table(_) | Value::Datetime(_) => {
            // No such settings today; parse as an inline TOML value.
            let wrapped: Table = format!("v = {raw}").parse().map_err(|_| bad())?;
            wrapped.get("v").cloned().ok_or_else(bad)?
        }
    })
}

fn flatten(table: &Table, prefix: &str, out: &mut BTreeMap<String, Value>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Table(inner) => flatten(inner, &key, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

/// The environment variable for `section.key`.
pub(super) fn env_name(key: &str) -> String {
    format!("APPLIANCE_{}", key.replace('.', "_").to_uppercase())
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// " (did you mean `x`?)" for the closest candidate within a small edit distance.
fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
