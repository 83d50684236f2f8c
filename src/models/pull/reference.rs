//! What a pull reference names, and which file of a repository it means.
//!
//! Two forms are accepted, each with the host spelt `hf.co/`, `huggingface.co/` or as an
//! `https://` URL (the host only says "Hugging Face": files come from `pull.hub_url`):
//!
//! - `hf.co/ORG/REPO[:QUANT]`: a GGUF file of the repository chosen by its quantisation
//!   label (case-insensitive, e.g. `Q4_K_M`); without one, `Q4_K_M` when there is such a
//!   file, else the repository's only GGUF file.
//! - `hf.co/ORG/REPO/PATH.gguf`: one file by its path (the web UI's `blob/main/` and
//!   `resolve/main/` URLs work too).
//!
//! Everything is checked against a narrow alphabet here, so nothing a client sends can
//! become a path outside the repository or a URL other than the hub's.

use std::fmt;

/// Longest reference accepted.
pub const MAX_REFERENCE_LEN: usize = 512;

/// The quantisation chosen when a reference names none.
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// How a reference is written, for error messages.
pub const FORMS: &str = "hf.co/ORG/REPO:QUANT (e.g. hf.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M) or hf.co/ORG/REPO/FILE.gguf";

/// A parsed reference to a GGUF file on the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// The user or organisation.
    pub org: String,
    /// The repository.
    pub repo: String,
    /// Which file.
    pub pick: Pick,
}

/// How the file is chosen inside the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// By quantisation label; `None`: the default choice.
    Quant(Option<String>),
    /// By path inside the repository.
    File(String),
}

impl fmt::Display for HubRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hf.co/{}/{}", self.org, self.repo)?;
        match &self.pick {
            Pick::Quant(None) => Ok(()),
            Pick::Quant(Some(q)) => write!(f, ":{q}"),
            Pick::File(path) => write!(f, "/{path}"),
        }
    }
}

/// Why a reference cannot be pulled, or why no file of a listing fits it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Not a Hugging Face reference at all (an Ollama library name, another registry).
    #[error(
        "`{0}` is not a Hugging Face reference: only Hugging Face GGUF references are supported, as {FORMS}"
    )]
    NotHuggingFace(String),
    /// A Hugging Face reference that is malformed.
    #[error("invalid reference: {0}; write it as {FORMS}")]
    Malformed(String),
    /// Several files fit; the client has to say which.
    #[error("{what} matches several files; add one of these quantisations or file names: {}", .choices.join(", "))]
    Ambiguous {
        /// What was asked for.
        what: String,
        /// The candidates (at most a few dozen).
        choices: Vec<String>,
    },
    /// Nothing in the repository fits.
    #[error("{0}")]
    NoMatch(String),
    /// A model split across several files.
    #[error(
        "{0} is split into several files (-0000N-of-0000M.gguf); split models are not supported: choose a quantisation that is one file"
    )]
    Split(String),
}

/// One file of a repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The sha256 of the content (from the LFS pointer), lower-case hex, when known.
    pub sha256: Option<String>,
}

impl HubFile {
    /// The last path component.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Parses a reference a client sent.
pub fn parse(text: &str) -> Result<HubRef, RefError> {
    let text = text.trim();
    if text.len() > MAX_REFERENCE_LEN {
        return Err(RefError::Malformed(format!(
            "a reference is at most {MAX_REFERENCE_LEN} characters"
        )));
    }
    let shown = || text.chars().take(100).collect::<String>();
    let without_scheme = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let rest = ["hf.co/", "huggingface.co/", "www.huggingface.co/"]
        .iter()
        .find_map(|host| strip_prefix_ignore_case(without_scheme, host))
        .ok_or_else(|| RefError::NotHuggingFace(shown()))?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let mut parts = rest.splitn(3, '/');
    let org = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    let tail = parts.next().unwrap_or_default().trim_end_matches('/');
    if org.is_empty() || second.is_empty() {
        return Err(RefError::Malformed(
            "it names no repository (expected ORG/REPO after the host)".into(),
        ));
    }
    check_segment("organisation", org)?;
    if tail.is_empty() {
        let (repo, quant) = match second.split_once(':') {
            Some((repo, quant)) => (repo, Some(quant)),
            None => (second, None),
        };
        check_segment("repository", repo)?;
        let quant = match quant {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("latest") => None,
            Some(q) => {
                check_quant(q)?;
                Some(q.to_string())
            }
        };
        return Ok(HubRef {
            org: org.to_string(),
            repo: repo.to_string(),
            pick: Pick::Quant(quant),
        });
    }
    if second.contains(':') {
        return Err(RefError::Malformed(
            "a quantisation tag and a file path cannot be combined".into(),
        ));
    }
    check_segment("repository", second)?;
    // The web UI's file URLs: …/blob/main/FILE and …/resolve/main/FILE.
    let path = match tail.split_once('/') {
        Some(("blob" | "resolve", revision_and_path)) => match revision_and_path.split_once('/') {
            Some(("main", path)) => path,
            _ => {
                return Err(RefError::Malformed(
                    "only the `main` revision can be pulled".into(),
                ));
            }
        },
        _ => tail,
    };
    check_path(path)?;
    Ok(HubRef {
        org: org.to_string(),
        repo: second.to_string(),
        pick: Pick::File(path.to_string()),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Hub names: letters, digits, `-`, `_`, `.`; not `.`-led, no `..`, at most 96.
fn check_segment(what: &str, segment: &str) -> Result<(), RefError> {
    let ok = (1..=96).contains(&segment.len())
        && !segment.starts_with(['.', '-'])
        && !segment.contains("..")
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RefError::Malformed(format!(
            "the {what} name must be 1-96 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn check_quant(quant: &str) -> Result<(), RefError> {
    let ok = (1..=32).contains(&quant.len())
        && quant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RefError::Malformed(
            "the quantisation tag must be 1-32 letters, digits, '-', '_' or '.' (e.g. Q4_K_M)"
                .into(),
        ))
    }
}

fn check_path(path: &str) -> Result<(), RefError> {
    let segments: Vec<&str> = path.split('/').collect();
    let ok = path.len() <= 400
        && segments.len() <= 8
        && segments.iter().all(|s| {
            (1..=200).contains(&s.len())
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        });
    if !ok {
        return Err(RefError::Malformed(
            "the file path must be at most 8 segments of letters, digits, '-', '_', '+' or '.'"
                .into(),
        ));
    }
    if !path.to_ascii_lowercase().ends_with(".gguf") {
        return Err(RefError::Malformed("the file must be a .gguf file".into()));
    }
    Ok(())
}

/// Whether a file name is one part of a split model (`…-00001-of-00003.gguf`).
pub fn is_split(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let Some(stem) = lower.strip_suffix(".gguf") else {
        return false;
    };
    // "-NNNNN-of-NNNNN" is 15 bytes (compared as bytes: names come from the hub and
    // may hold any UTF-8).
    let bytes = stem.as_bytes();
    let Some(tail) = bytes.len().checked_sub(15).map(|at| &bytes[at..]) else {
        return false;
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    tail[0] == b'-' && digits(&tail[1..6]) && &tail[6..10] == b"-of-" && digits(&tail[10..])
}

/// Files that are GGUF but not a model to chat with (vision projectors).
fn is_auxiliary(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("mmproj")
}

/// Whether `name` carries `quant` as a whole label: preceded by the start or one of
/// `-._/`, followed by the end or `-` or `.` (so `Q4_K` does not match `Q4_K_M`, nor
/// `Q4_0` match `IQ4_0`).
pub fn has_quant(name: &str, quant: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let quant = quant.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = name[from..].find(&quant) {
        let start = from + found;
        let end = start + quant.len();
        let before = name[..start].chars().next_back();
        let after = name[end..].chars().next();
        let starts = before.is_none_or(|c| matches!(c, '-' | '.' | '_' | '/'));
        let ends = after.is_none_or(|c| matches!(c, '-' | '.'));
        if starts && ends {
            return true;
        }
        from = start + 1;
    }
    false
}

/// At most this many choices are listed in an error.
const MAX_CHOICES: usize = 40;

fn choices<'a>(files: impl Iterator<Item = &'a HubFile>) -> Vec<String> {
    let mut names: Vec<String> = files.map(|f| f.path.clone()).collect();
    names.sort();
    names.dedup();
    if names.len() > MAX_CHOICES {
        let more = names.len() - MAX_CHOICES;
        names.truncate(MAX_CHOICES);
        names.push(format!("… and {more} more"));
    }
    names
}

/// Chooses the file `reference` means from a repository listing.
pub fn choose<'a>(reference: &HubRef, files: &'a [HubFile]) -> Result<&'a HubFile, RefError> {
    let ggufs: Vec<&HubFile> = files
        .iter()
        .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    let models: Vec<&HubFile> = ggufs
        .iter()
        .copied()
        .filter(|f| !is_auxiliary(f.file_name()))
        .collect();
    let repo = format!("hf.co/{}/{}", reference.org, reference.repo);
    if models.is_empty() {
        return Err(RefError::NoMatch(format!(
            "{repo} holds no GGUF model file"
        )));
    }
    let single = |matches: Vec<&'a HubFile>, what: String| -> Result<&'a HubFile, RefError> {
        match matches.as_slice() {
            [one] if is_split(one.file_name()) => Err(RefError::Split(one.path.clone())),
            [one] => Ok(one),
            many if many.iter().all(|f| is_split(f.file_name())) => Err(RefError::Split(what)),
            many => Err(RefError::Ambiguous {
                what,
                choices: choices(many.iter().copied()),
            }),
        }
    };
    match &reference.pick {
        Pick::File(path) => {
            let found = ggufs
                .iter()
                .find(|f| f.path == *path)
                .or_else(|| ggufs.iter().find(|f| f.path.eq_ignore_ascii_case(path)))
                .copied()
                .ok_or_else(|| {
                    RefError::NoMatch(format!(
                        "{repo} has no file `{path}`; its GGUF files are: {}",
                        choices(models.iter().copied()).join(", ")
                    ))
                })?;
            if is_split(found.file_name()) {
                return Err(RefError::Split(found.path.clone()));
            }
            Ok(found)
        }
        Pick::Quant(Some(quant)) => {
            let matches: Vec<&HubFile> = models
                .iter()
                .copied()
                .filter(|f| has_quant(f.file_name(), quant))
                .collect();
            if matches.is_empty() {
                return Err(RefError::NoMatch(format!(
                    "{repo} has no GGUF file with quantisation `{quant}`; its GGUF files are: {}",
                    choices(models.iter().copied()).join(", ")
                )));
            }
            single(matches, format!("{repo}:{quant}"))
        }
        Pick::Quant(None) => {
            let preferred: Vec<&HubFile> = models
                .iter()
                .copied()
                .filter(|f| has_quant(f.file_name(), DEFAULT_QUANT))
                .collect();
            if !preferred.is_empty() {
                return single(preferred, format!("{repo}:{DEFAULT_QUANT}"));
            }
            single(models, repo)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(org: &str, repo: &str, pick: Pick) -> HubRef {
        HubRef {
            org: org.into(),
            repo: repo.into(),
            pick,
        }
    }

    fn file(path: &str) -> HubFile {
        HubFile {
            path: path.into(),
            size: 1,
            sha256: None,
        }
    }

    #[test]
    fn every_host_spelling_and_form_parses() {
        let quant = hub("org", "Repo-GGUF", Pick::Quant(Some("Q4_K_M".into())));
        for text in [
            "hf.co/org/Repo-GGUF:Q4_K_M",
            "huggingface.co/org/Repo-GGUF:Q4_K_M",
            "https://huggingface.co/org/Repo-GGUF:Q4_K_M",
            "https://hf.co/org/Repo-GGUF:Q4_K_M",
            "  HF.CO/org/Repo-GGUF:Q4_K_M ",
        ] {
            assert_eq!(parse(text).unwrap(), quant, "{text}");
        }
        assert_eq!(
            parse("hf.co/org/repo").unwrap(),
            hub("org", "repo", Pick::Quant(None))
        );
        assert_eq!(
            parse("hf.co/org/repo:latest").unwrap(),
            hub("org", "repo", Pick::Quant(None))
        );
        let file = hub("org", "repo", Pick::File("sub/model-Q8_0.gguf".into()));
        for text in [
            "hf.co/org/repo/sub/model-Q8_0.gguf",
            "https://huggingface.co/org/repo/blob/main/sub/model-Q8_0.gguf",
            "https://huggingface.co/org/repo/resolve/main/sub/model-Q8_0.gguf?download=true",
        ] {
            assert_eq!(parse(text).unwrap(), file, "{text}");
        }
        assert_eq!(
            parse("hf.co/org/repo:Q4_K_M").unwrap().to_string(),
            "hf.co/org/repo:Q4_K_M"
        );
    }

    #[test]
    fn other_registries_and_malformed_references_are_refused() {
        for text in [
            "llama3",
            "llama3:8b",
            "library/llama3",
            "registry.ollama.ai/library/llama3:latest",
            "https://example.com/org/repo",
            "",
        ] {
            assert!(
                matches!(parse(text), Err(RefError::NotHuggingFace(_))),
                "{text}"
            );
        }
        let message = parse("llama3").unwrap_err().to_string();
        assert!(
            message.contains("only Hugging Face GGUF references"),
            "{message}"
        );
        assert!(message.contains("hf.co/ORG/REPO:QUANT"), "{message}");
        for text in [
            "hf.co/",
            "hf.co/org",
            "hf.co/org/",
            "hf.co/../repo",
            "hf.co/org/re po",
            "hf.co/org/repo:Q4 K",
            "hf.co/org/repo:",
            "hf.co/org/repo/../../etc/passwd.gguf",
            "hf.co/org/repo/model.bin",
            "hf.co/org/repo/.hidden.gguf",
            "hf.co/org/repo/a//b.gguf",
            "hf.co/org/repo:Q4/x.gguf",
            "hf.co/org/repo/blob/dev/x.gguf",
            "hf.co/org/repo/x%2F..%2Fy.gguf",
        ] {
            assert!(
                matches!(parse(text), Err(RefError::Malformed(_))),
                "{text}: {:?}",
                parse(text)
            );
        }
        let long = format!("hf.co/org/{}", "a".repeat(600));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn quant_labels_match_whole_labels_only() {
        assert!(has_quant("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "q4_k_m"));
        assert!(has_quant("model.Q4_K_M.gguf", "Q4_K_M"));
        assert!(has_quant("model_q8_0.gguf", "Q8_0"));
        assert!(!has_quant("model-Q4_K_M.gguf", "Q4_K"));
        assert!(!has_quant("model-IQ4_XS.gguf", "Q4_XS"));
        assert!(!has_quant("model-Q4_K_S.gguf", "Q4_K_M"));
        assert!(has_quant("model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"));
    }

    #[test]
    fn split_files_are_recognised() {
        assert!(is_split("model-Q4_K_M-00001-of-00003.gguf"));
        assert!(is_split("x-00002-OF-00002.GGUF"));
        assert!(!is_split("model-Q4_K_M.gguf"));
        assert!(!is_split("00001-of-00003.gguf"));
        assert!(!is_split("ééééééééé.gguf"));
    }

    #[test]
    fn the_quant_asked_for_is_chosen_case_insensitively() {
        let files = vec![
            file("README.md"),
            file("m-Q4_K_M.gguf"),
            file("m-Q4_K_S.gguf"),
            file("m-Q8_0.gguf"),
            file("mmproj-m-f16.gguf"),
        ];
        let pick = |q: &str| hub("o", "r", Pick::Quant(Some(q.into())));
        assert_eq!(choose(&pick("q8_0"), &files).unwrap().path, "m-Q8_0.gguf");
        assert_eq!(
            choose(&pick("Q4_K_S"), &files).unwrap().path,
            "m-Q4_K_S.gguf"
        );
        let missing = choose(&pick("Q2_K"), &files).unwrap_err();
        assert!(matches!(missing, RefError::NoMatch(_)));
        assert!(missing.to_string().contains("m-Q8_0.gguf"), "{missing}");
        assert!(!missing.to_string().contains("mmproj"), "{missing}");
    }

    #[test]
    fn without_a_quant_q4_k_m_is_preferred_then_the_only_file() {
        let files = vec![file("m-Q8_0.gguf"), file("m-Q4_K_M.gguf")];
        let default = hub("o", "r", Pick::Quant(None));
        assert_eq!(choose(&default, &files).unwrap().path, "m-Q4_K_M.gguf");
        let only = vec![file("m-Q4_1.gguf"), file("mmproj-f16.gguf"), file("a.txt")];
        assert_eq!(choose(&default, &only).unwrap().path, "m-Q4_1.gguf");
        let several = vec![file("m-Q4_1.gguf"), file("m-Q8_0.gguf")];
        match choose(&default, &several).unwrap_err() {
            RefError::Ambiguous { choices, .. } => {
                assert_eq!(choices, vec!["m-Q4_1.gguf", "m-Q8_0.gguf"]);
            }
            other => panic!("{other:?}"),
        }
        let none = vec![file("README.md"), file("model.safetensors")];
        assert!(matches!(choose(&default, &none), Err(RefError::NoMatch(_))));
    }

    #[test]
    fn a_quant_matching_several_files_is_ambiguous() {
        let files = vec![file("a/m-Q4_K_M.gguf"), file("b/m-Q4_K_M.gguf")];
        let pick = hub("o", "r", Pick::Quant(Some("Q4_K_M".into())));
        let error = choose(&pick, &files).unwrap_err();
        assert!(matches!(error, RefError::Ambiguous { .. }));
        assert!(error.to_string().contains("a/m-Q4_K_M.gguf"), "{error}");
    }

    #[test]
    fn split_models_are_refused_clearly() {
        let files = vec![
            file("m-Q4_K_M-00001-of-00002.gguf"),
            file("m-Q4_K_M-00002-of-00002.gguf"),
            file("m-Q2_K.gguf"),
        ];
        let pick = hub("o", "r", Pick::Quant(Some("Q4_K_M".into())));
        assert!(matches!(choose(&pick, &files), Err(RefError::Split(_))));
        let by_file = hub("o", "r", Pick::File("m-Q4_K_M-00001-of-00002.gguf".into()));
        let error = choose(&by_file, &files).unwrap_err();
        assert!(error.to_string().contains("split"), "{error}");
        let q2 = hub("o", "r", Pick::Quant(Some("q2_k".into())));
        assert_eq!(choose(&q2, &files).unwrap().path, "m-Q2_K.gguf");
    }

    #[test]
    fn files_are_found_by_exact_then_case_insensitive_path() {
        let files = vec![file("Sub/Model-Q4_0.gguf")];
        let exact = hub("o", "r", Pick::File("Sub/Model-Q4_0.gguf".into()));
        let loose = hub("o", "r", Pick::File("sub/model-q4_0.gguf".into()));
        let missing = hub("o", "r", Pick::File("other.gguf".into()));
        assert!(choose(&exact, &files).is_ok());
        assert!(choose(&loose, &files).is_ok());
        assert!(matches!(
            choose(&missing, &files),
            Err(RefError::NoMatch(_))
        ));
    }
}
