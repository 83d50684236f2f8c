//! `appliance config show`: every effective value and where it came from.

use crate::cli::exit;
use crate::config::Loaded;

/// Prints `key = value  # source` for every setting, as valid TOML.
pub fn show(loaded: &Loaded) -> anyhow::Result<u8> {
    println!("# {}", super::describe_sources(loaded));
    let width = loaded
        .values
        .iter()
        .map(|(key, (value, _))| key.len() + value.to_string().len())
        .max()
        .unwrap_or(0);
    let mut section = "";
    for (key, (value, source)) in &loaded.values {
        let (this_section, name) = key.split_once('.').unwrap_or(("", key));
        if this_section != section {
            println!("\n[{this_section}]");
            section = this_section;
        }
        let assignment = format!("{name} = {value}");
        let pad = width + 4 - (key.len() + value.to_string().len());
        println!("{assignment}{:pad$}# {source}", "", pad = pad.max(1));
    }
    Ok(exit::OK)
}
