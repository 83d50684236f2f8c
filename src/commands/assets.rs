//! `appliance generate-assets DIR` (hidden): the man pages and shell completions, made
//! from the clap definitions in `cli` at package time (scripts/package), so they can
//! never describe a command line other than the one the packaged binary parses.
//! Writes only under DIR; reads no configuration.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The shells completions are written for, with the file names their packages look up
/// (`bash-completion` by command name, zsh `_name`, fish `name.fish`).
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes `DIR/man/appliance.1` and one page per visible subcommand
/// (`appliance-users-add.1`, …), and `DIR/completions/{appliance.bash,_appliance,
/// appliance.fish}`. Every file is world-readable (they are installed under
/// /usr/share), whatever the process umask.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for sub in [&man, &completions] {
        fs_err::create_dir_all(sub)?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    let mut written = list(&man)?;
    for shell in SHELLS {
        let path =
            clap_complete::generate_to(shell, &mut Cli::command(), "appliance", &completions)
                .with_context(|| {
                    format!("writing {shell} completions into {}", completions.display())
                })?;
        written.push(path);
    }
    for path in &written {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    println!("wrote {} files under {}", written.len(), dir.display());
    Ok(())
}

/// The files directly in `dir`, sorted.
fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = fs_err::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_page_per_visible_subcommand_and_every_completion() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let man = dir.path().join("man");
        for page in ["appliance.1", "appliance-serve.1", "appliance-users-add.1"] {
            let text = fs_err::read_to_string(man.join(page)).unwrap();
            assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        }
        // Hidden commands are internal: no page for them.
        assert!(!man.join("appliance-worker.1").exists());
        assert!(!man.join("appliance-generate-assets.1").exists());
        let completions = dir.path().join("completions");
        for file in ["appliance.bash", "_appliance", "appliance.fish"] {
            let text = fs_err::read_to_string(completions.join(file)).unwrap();
            assert!(text.contains("serve"), "{file}");
        }
        let mode = fs_err::metadata(man.join("appliance.1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}
