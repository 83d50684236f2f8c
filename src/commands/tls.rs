//! `appliance tls self-signed`: a certificate and key for first use of HTTPS.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::exit;
use crate::config::Loaded;

/// Options of `tls self-signed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelfSignedArgs {
    /// Extra names (DNS names or IP addresses) the certificate is valid for, besides
    /// localhost, 127.0.0.1, ::1 and this host's name (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Days of validity.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Directory for cert.pem and key.pem (default: <data_dir>/tls).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Writes a self-signed certificate and its key, and prints how to enable them.
pub fn self_signed(loaded: &Loaded, args: &SelfSignedArgs) -> anyhow::Result<u8> {
    if !(1..=3650).contains(&args.days) {
        bail!("--days must be from 1 to 3650");
    }
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| loaded.config.paths.data_dir.join("tls"));
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !args.force && (cert_path.exists() || key_path.exists()) {
        bail!(
            "{} already has a certificate; use --force to replace it",
            dir.display()
        );
    }
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !hostname.is_empty() && !names.contains(&hostname) {
        names.push(hostname);
    }
    for host in &args.hosts {
        if host.is_empty()
            || host.len() > 253
            || host.contains(|c: char| c.is_whitespace() || c == '/')
        {
            bail!("`{host}` is not a host name or address");
        }
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let mut params =
        rcgen::CertificateParams::new(names.clone()).context("building the certificate")?;
    let date = |t: jiff::Timestamp| {
        let part = |f: &str| t.strftime(f).to_string().parse::<i32>().unwrap_or(1);
        rcgen::date_time_ymd(part("%Y"), part("%m") as u8, part("%d") as u8)
    };
    let now = jiff::Timestamp::now();
    params.not_before = date(now - jiff::SignedDuration::from_hours(24));
    params.not_after = date(now + jiff::SignedDuration::from_hours(24 * args.days as i64));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "appliance (self-signed)");
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;

    fs_err::create_dir_all(&dir)?;
    write(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    println!("valid for {} days for: {}", args.days, names.join(", "));
    println!("enable HTTPS with, in the configuration file:");
    println!(
        "  [tls]\n  cert = \"{}\"\n  key = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    println!(
        "clients must trust {} (e.g. `curl --cacert …`)",
        cert_path.display()
    );
    Ok(exit::OK)
}

/// Writes a file atomically with the given permissions.
fn write(path: &std::path::Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let temp = path.with_extension("pem.tmp");
    let _ = fs_err::remove_file(&temp);
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs_err::rename(&temp, path).with_context(|| format!("installing {}", path.display()))?;
    Ok(())
}
