//! `appliance config show`: every effective value and where it came from.

use crate::cli::exit;
use crate::config::Loaded;

/// Prints `key = value  # source` for every setting, as valid TOML.
pub fn show(loaded: &Loaded) -> anyhow::Result<u8> {
    println!("# {}", super::describe_sources(loaded));
    let assignment = |key: &str, value: &toml::Value| {
        let name = key.split_once('.').map_or(key, |(_, name)| name);
        format!("{name} = {value}")
    };
    let width = loaded
        .values
        .iter()
        .map(|(key, (value, _))| assignment(key, value).len())
        .max()
        .unwrap_or(0);
    let mut section = "";
    for (key, (value, source)) in &loaded.values {
        let this_section = key.split_once('.').map_or("", |(section, _)| section);
        if this_section != section {
            println!("\n[{this_section}]");
            section = this_section;
        }
        // Secrets are never printed, only whether they are set.
        let secret = key.ends_with("api_key") || key == "pull.token";
        let shown = if secret && value.as_str().is_some_and(|v| !v.is_empty()) {
            toml::Value::String("(set)".into())
        } else {
            value.clone()
        };
        println!("{:<width$}  # {source}", assignment(key, &shown));
    }
    Ok(exit::OK)
}
