//! The JWT secret and master keys. In production they come from the
//! environment; the embedded default makes its own on first start, in the
//! data folder with mode 0600, and says so.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine as _;
use commands::cipher::MasterKeys;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::tokens::JwtKeys;
use crate::config::Settings;

pub struct Secrets {
    pub jwt: JwtKeys,
    pub master_keys: MasterKeys,
}

const JWT_FILE: &str = "jwt_secret";
const KEYS_FILE: &str = "master_keys";

/// # Errors
/// When a secret is missing on PostgreSQL, malformed, or cannot be stored.
pub fn load(settings: &Settings) -> anyhow::Result<Secrets> {
    let jwt_secret = match &settings.jwt_secret {
        Some(secret) => secret.clone(),
        None if settings.is_postgres() => {
            bail!("TICKETS_JWT_SECRET must be set when DATABASE_URL is PostgreSQL")
        }
        None => stored_or_generated(&settings.data_dir, JWT_FILE, "JWT secret", || {
            let mut bytes = [0u8; 48];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            base64::engine::general_purpose::STANDARD.encode(bytes)
        })?,
    };
    let keys_spec = match &settings.master_keys {
        Some(spec) => spec.clone(),
        None if settings.is_postgres() => {
            bail!("TICKETS_MASTER_KEYS must be set when DATABASE_URL is PostgreSQL")
        }
        None => stored_or_generated(&settings.data_dir, KEYS_FILE, "master key", || MasterKeys::generate("k1").1)?,
    };
    let jwt = JwtKeys::new(jwt_secret.expose_secret().as_bytes()).context("TICKETS_JWT_SECRET is invalid")?;
    let master_keys = MasterKeys::parse(keys_spec.expose_secret()).context("TICKETS_MASTER_KEYS is invalid")?;
    Ok(Secrets { jwt, master_keys })
}

fn stored_or_generated(
    dir: &Path,
    file: &str,
    what: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<SecretString> {
    let path = dir.join(file);
    if path.exists() {
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let value = generate();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
    out.write_all(value.as_bytes())?;
    out.sync_all()?;
    tracing::warn!(path = %path.display(), "generated a new {what}; keep this file safe and back it up");
    Ok(SecretString::from(value))
}
