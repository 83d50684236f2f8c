//! A model's settings beside its weights: the `SYSTEM`, `PARAMETER`, `TEMPLATE` and
//! `LICENSE` of an Ollama Modelfile, kept in a sidecar `<name>.modelfile.json` next to
//! `<name>.gguf`, and a parser for the subset of the Modelfile language that sets them.
//!
//! A sidecar file (not a database table) travels with the model: `models export`
//! bundles it, a copy gets its own, deleting the model deletes it, and an offline CLI
//! command sees exactly what the daemon sees.
//!
//! Parameter names and value types are checked here; their ranges are checked where
//! every request's sampling numbers are (the HTTP layer's one bounded place). `SYSTEM`
//! opens chats without a system message and `PARAMETER`s fill the sampling settings a
//! request leaves unset (`http::inference`); `TEMPLATE` and `LICENSE` are kept and shown
//! by `/api/show`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::registry::RegistryError;

/// Largest sidecar file read, in bytes.
const MAX_SIDECAR_BYTES: u64 = 1 << 20;

/// Longest `SYSTEM`, `TEMPLATE` or `LICENSE` text, in bytes.
pub const MAX_TEXT_BYTES: usize = 128 * 1024;

/// Longest Modelfile accepted, in bytes.
pub const MAX_MODELFILE_BYTES: usize = 512 * 1024;

/// The parameters a Modelfile may set, and whether each is a number (float or
/// integer) or the repeatable `stop`.
const PARAMETERS: &[(&str, Kind)] = &[
    ("temperature", Kind::Float),
    ("top_p", Kind::Float),
    ("min_p", Kind::Float),
    ("repeat_penalty", Kind::Float),
    ("frequency_penalty", Kind::Float),
    ("presence_penalty", Kind::Float),
    ("top_k", Kind::Int),
    ("repeat_last_n", Kind::Int),
    ("seed", Kind::Int),
    ("num_predict", Kind::Int),
    ("num_ctx", Kind::Int),
    ("stop", Kind::Stop),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Stop,
}

/// Why settings were refused. Messages are for the client that sent them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelfileError(pub String);

/// A model's settings (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The model (name or file name) it was made from, for `/api/show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The default system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// An Ollama (Go) prompt template, kept and shown; chats use the GGUF's own
    /// chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Licence text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Sampling defaults, by Ollama option name (`stop` is a list).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
}

impl Overrides {
    /// Whether nothing is set besides `from`.
    pub fn is_empty(&self) -> bool {
        self.system.is_none()
            && self.template.is_none()
            && self.license.is_none()
            && self.parameters.is_empty()
    }

    /// `self` with every field `other` sets replaced (parameters merged key by key).
    pub fn merged(mut self, other: Overrides) -> Overrides {
        self.from = other.from.or(self.from);
        self.system = other.system.or(self.system);
        self.template = other.template.or(self.template);
        self.license = other.license.or(self.license);
        self.parameters.extend(other.parameters);
        self
    }

    /// Checks names, types and sizes (not ranges: see the module comment).
    pub fn check(&self) -> Result<(), ModelfileError> {
        for (what, text) in [
            ("system", &self.system),
            ("template", &self.template),
            ("license", &self.license),
        ] {
            if let Some(text) = text {
                if text.len() > MAX_TEXT_BYTES {
                    return Err(ModelfileError(format!(
                        "`{what}` is longer than {MAX_TEXT_BYTES} bytes"
                    )));
                }
                if text.contains("\"\"\"") || text.contains('\0') {
                    return Err(ModelfileError(format!(
                        "`{what}` may not contain \"\"\" or NUL characters"
                    )));
                }
            }
        }
        if self.from.as_ref().is_some_and(|f| f.len() > 512) {
            return Err(ModelfileError("`from` is too long".into()));
        }
        for (name, value) in &self.parameters {
            let kind = kind_of(name)?;
            let ok = match kind {
                Kind::Float => value.is_number(),
                Kind::Int => value.is_i64(),
                Kind::Stop => value.as_array().is_some_and(|list| {
                    list.len() <= 16
                        && list
                            .iter()
                            .all(|s| s.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 256))
                }),
            };
            if !ok {
                return Err(ModelfileError(match kind {
                    Kind::Float => format!("parameter `{name}` must be a number"),
                    Kind::Int => format!("parameter `{name}` must be an integer"),
                    Kind::Stop => {
                        "parameter `stop` must be at most 16 strings of 1-256 bytes".into()
                    }
                }));
            }
        }
        Ok(())
    }

    /// The parameters as Ollama's `/api/show` prints them: one `name value` per line.
    pub fn parameters_text(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.parameters {
            let values: Vec<String> = match value {
                Value::Array(list) => list.iter().map(Value::to_string).collect(),
                other => vec![other.to_string()],
            };
            for v in values {
                out.push_str(&format!("{name:<30} {v}\n"));
            }
        }
        out
    }

    /// A Modelfile that recreates this model from `from`.
    pub fn modelfile(&self, from: &str) -> String {
        let mut out = format!("# Modelfile generated by the appliance\nFROM {from}\n");
        if let Some(t) = &self.template {
            out.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
        }
        if let Some(s) = &self.system {
            out.push_str(&format!("SYSTEM \"\"\"{s}\"\"\"\n"));
        }
        for line in self.parameters_text().lines() {
            out.push_str(&format!("PARAMETER {line}\n"));
        }
        if let Some(l) = &self.license {
            out.push_str(&format!("LICENSE \"\"\"{l}\"\"\"\n"));
        }
        out
    }

    /// The sidecar of the model `name` in `dir`.
    pub fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.modelfile.json"))
    }

    /// Reads a model's sidecar; `None` when it has none. Blocking.
    pub fn load(dir: &Path, name: &str) -> Result<Option<Overrides>, RegistryError> {
        let path = Self::path(dir, name);
        let bad = |reason: String| RegistryError::BadModel {
            path: path.display().to_string(),
            reason,
        };
        let size = match fs_err::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                });
            }
        };
        if size > MAX_SIDECAR_BYTES {
            return Err(bad("its settings file is too large".into()));
        }
        let text = fs_err::read_to_string(&path).map_err(|source| RegistryError::Io {
            context: format!("reading {}", path.display()),
            source,
        })?;
        let overrides: Overrides = serde_json::from_str(&text)
            .map_err(|e| bad(format!("its settings file is not valid: {e}")))?;
        overrides.check().map_err(|e| bad(e.0))?;
        Ok(Some(overrides))
    }

    /// Writes a model's sidecar atomically (or removes it when nothing is set).
    /// Blocking.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), RegistryError> {
        let path = Self::path(dir, name);
        let io = |source| RegistryError::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        if self.is_empty() && self.from.is_none() {
            return remove(dir, name);
        }
        let temp = dir.join(format!(".{name}.modelfile.json.tmp"));
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        {
            use std::io::Write;
            let mut file = fs_err::File::create(&temp).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        fs_err::rename(&temp, &path).map_err(io)
    }
}

/// Removes a model's sidecar, if any. Blocking.
pub fn remove(dir: &Path, name: &str) -> Result<(), RegistryError> {
    let path = Overrides::path(dir, name);
    match fs_err::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RegistryError::Io {
            context: format!("deleting {}", path.display()),
            source,
        }),
    }
}

fn kind_of(name: &str) -> Result<Kind, ModelfileError> {
    PARAMETERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            ModelfileError(format!(
                "unsupported parameter `{}`; supported: {}",
                name.chars().take(64).collect::<String>(),
                PARAMETERS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Adds one `PARAMETER name value` (as Modelfile text) to `parameters`.
fn add_parameter(
    parameters: &mut BTreeMap<String, Value>,
    name: &str,
    text: &str,
) -> Result<(), ModelfileError> {
    let name = name.to_ascii_lowercase();
    let text = unquote(text.trim());
    let invalid = |what: &str| {
        ModelfileError(format!(
            "PARAMETER {name}: `{}` is not {what}",
            text.chars().take(64).collect::<String>()
        ))
    };
    let value = match kind_of(&name)? {
        Kind::Float => {
            let n: f64 = text.parse().map_err(|_| invalid("a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| invalid("a finite number"))?
        }
        Kind::Int => Value::from(text.parse::<i64>().map_err(|_| invalid("an integer"))?),
        Kind::Stop => {
            let list = parameters
                .entry("stop".to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(Value::String(text.to_string()));
            }
            return Ok(());
        }
    };
    parameters.insert(name, value);
    Ok(())
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|_| text.len() >= 2)
        .unwrap_or(text)
}

/// What a Modelfile says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modelfile {
    /// `FROM`: a model name or a GGUF file path.
    pub from: Option<String>,
    /// Everything else.
    pub overrides: Overrides,
}

/// Parses the Modelfile subset: `FROM`, `SYSTEM`, `TEMPLATE`, `PARAMETER`, `LICENSE`,
/// `#` comments; values may be `"""triple-quoted"""` across lines. Other instructions
/// (`ADAPTER`, `MESSAGE`, …) are refused by name.
pub fn parse(text: &str) -> Result<Modelfile, ModelfileError> {
    if text.len() > MAX_MODELFILE_BYTES {
        return Err(ModelfileError(format!(
            "the Modelfile is longer than {MAX_MODELFILE_BYTES} bytes"
        )));
    }
    let mut out = Modelfile::default();
    let mut rest = text;
    let mut line_no = 0usize;
    while !rest.is_empty() {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        line_no += 1;
        rest = after;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instruction, args) = line
            .split_once(char::is_whitespace)
            .map(|(i, a)| (i, a.trim_start()))
            .unwrap_or((line, ""));
        // A """ value may continue over the following lines.
        let value: String = if let Some(open) = args.strip_prefix("\"\"\"") {
            if let Some(end) = open.find("\"\"\"") {
                open[..end].to_string()
            } else {
                let Some(end) = rest.find("\"\"\"") else {
                    return Err(ModelfileError(format!(
                        "line {line_no}: a \"\"\" value is never closed"
                    )));
                };
                let value = format!("{open}\n{}", &rest[..end]);
                line_no += rest[..end].matches('\n').count();
                rest = rest[end + 3..]
                    .split_once('\n')
                    .map(|(_, after)| after)
                    .unwrap_or("");
                value
            }
        } else {
            args.to_string()
        };
        let at = |message: String| ModelfileError(format!("line {line_no}: {message}"));
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => out.from = Some(value.trim().to_string()),
            "SYSTEM" => out.overrides.system = Some(value),
            "TEMPLATE" => out.overrides.template = Some(value),
            "LICENSE" => out.overrides.license = Some(value),
            "PARAMETER" => {
                let (name, v) = value
                    .trim()
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| at("PARAMETER needs a name and a value".into()))?;
                add_parameter(&mut out.overrides.parameters, name, v).map_err(|e| at(e.0))?;
            }
            other => {
                return Err(at(format!(
                    "`{}` is not supported (FROM, SYSTEM, TEMPLATE, PARAMETER and LICENSE are)",
                    other.chars().take(32).collect::<String>()
                )));
            }
        }
    }
    out.overrides.check()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modelfile_subset_parses() {
        let text = "# a comment\nFROM SmolLM2-135M-Instruct-Q4_1\nPARAMETER temperature 0.2\n\
                    PARAMETER stop \"<|im_end|>\"\nparameter stop END\nPARAMETER num_ctx 2048\n\
                    SYSTEM \"\"\"You are terse.\nVery terse.\"\"\"\nTEMPLATE {{ .Prompt }}\n";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.from.as_deref(), Some("SmolLM2-135M-Instruct-Q4_1"));
        let o = &parsed.overrides;
        assert_eq!(o.system.as_deref(), Some("You are terse.\nVery terse."));
        assert_eq!(o.template.as_deref(), Some("{{ .Prompt }}"));
        assert_eq!(o.parameters["temperature"], serde_json::json!(0.2));
        assert_eq!(o.parameters["num_ctx"], serde_json::json!(2048));
        assert_eq!(
            o.parameters["stop"],
            serde_json::json!(["<|im_end|>", "END"])
        );
        let shown = o.modelfile("base");
        assert!(shown.contains("PARAMETER temperature"), "{shown}");
        assert_eq!(parse(&shown).unwrap().overrides, *o, "{shown}");
    }

    #[test]
    fn unsupported_instructions_and_values_are_refused() {
        for (text, needle) in [
            ("ADAPTER ./x.bin", "ADAPTER"),
            ("PARAMETER mirostat 1", "unsupported parameter"),
            ("PARAMETER temperature hot", "not a number"),
            ("PARAMETER top_k 1.5", "not an integer"),
            ("PARAMETER temperature", "needs a name and a value"),
            ("SYSTEM \"\"\"never closed", "never closed"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
        let long = format!("SYSTEM {}", "x".repeat(MAX_TEXT_BYTES + 1));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn sidecars_round_trip_and_are_removed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Overrides::load(dir.path(), "m").unwrap(), None);
        let o = Overrides {
            system: Some("Be brief.".into()),
            ..Default::default()
        };
        o.save(dir.path(), "m").unwrap();
        assert_eq!(Overrides::load(dir.path(), "m").unwrap(), Some(o));
        Overrides::default().save(dir.path(), "m").unwrap();
        assert!(!Overrides::path(dir.path(), "m").exists());
    }

    #[test]
    fn merging_keeps_what_the_newer_settings_leave_unset() {
        let mut base = Overrides {
            system: Some("old".into()),
            ..Default::default()
        };
        base.parameters.insert("top_k".into(), 10.into());
        let mut newer = Overrides {
            template: Some("t".into()),
            ..Default::default()
        };
        newer.parameters.insert("seed".into(), 1.into());
        let merged = base.merged(newer);
        assert_eq!(merged.system.as_deref(), Some("old"));
        assert_eq!(merged.template.as_deref(), Some("t"));
        assert_eq!(merged.parameters.len(), 2);
    }
}
