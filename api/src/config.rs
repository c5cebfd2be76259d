//! Settings: command-line flags with environment equivalents (DESIGN §7),
//! read once at start-up. Secrets are wrapped so they never print.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Parser)]
#[command(name = "tickets", version, about = "Secure internal IT incident system")]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an admin, or promote an existing user; the password is read
    /// from a prompt, or from standard input when it is not a terminal.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Administrator")]
        display_name: String,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Empty the read models and project every event again.
    RebuildProjections,
    /// Re-wrap every ticket's data key under the active master key.
    RotateKeys,
}

#[derive(Debug, Clone, Args)]
pub struct Options {
    /// `sqlite://…` (default: `<data dir>/tickets.db`) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    #[arg(long, env = "TICKETS_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,
    #[arg(long, env = "TICKETS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// HS256 secret for access tokens, at least 32 bytes.
    #[arg(long, env = "TICKETS_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// `kid:base64,…` 32-byte master keys; the first is active.
    #[arg(long, env = "TICKETS_MASTER_KEYS", hide_env_values = true, global = true)]
    pub master_keys: Option<String>,
    #[arg(long, env = "TICKETS_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024, global = true)]
    pub max_upload_bytes: u64,
    /// Where attachments are stored: `file` (under the data folder) or
    /// `s3://bucket/prefix` with the usual `AWS_*` variables.
    #[arg(long, env = "TICKETS_BLOB_STORE", default_value = "file", global = true)]
    pub blob_store: String,
    #[arg(long, env = "TICKETS_ADMIN_EMAIL", global = true)]
    pub admin_email: Option<String>,
    #[arg(long, env = "TICKETS_ADMIN_PASSWORD", hide_env_values = true, global = true)]
    pub admin_password: Option<String>,
    /// Serve GraphQL introspection (and so GraphiQL's schema view): `true`,
    /// `false`, or `admins` (to signed-in admins only).
    #[arg(long, env = "TICKETS_INTROSPECTION", default_value = "true", global = true)]
    pub introspection: Introspection,
    /// `GET /metrics`: `open`, or `off` (answered 404).
    #[arg(long, env = "TICKETS_METRICS", default_value = "open", global = true)]
    pub metrics: Metrics,
    /// When set, `GET /metrics` wants it as a bearer token.
    #[arg(long, env = "TICKETS_METRICS_TOKEN", hide_env_values = true, global = true)]
    pub metrics_token: Option<String>,
    /// Seconds a GraphQL request may run once its body has arrived; then it
    /// is abandoned and answered `TOO_MANY_REQUESTS`.
    #[arg(long, env = "TICKETS_REQUEST_TIMEOUT", default_value_t = 30, global = true)]
    pub request_timeout: u64,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the
    /// client (comma-separated); nobody else's is believed.
    #[arg(long, env = "TICKETS_TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<IpAddr>,
}

/// Who may introspect the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Introspection {
    #[value(name = "true")]
    Open,
    #[value(name = "false")]
    Off,
    /// Signed-in admins only.
    Admins,
}

impl std::fmt::Display for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "true",
            Self::Off => "false",
            Self::Admins => "admins",
        })
    }
}

/// Whether `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metrics {
    Open,
    Off,
}

/// Typed settings, secrets wrapped.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<SecretString>,
    pub master_keys: Option<SecretString>,
    pub max_upload_bytes: u64,
    pub blob_store: String,
    /// `object_store` options for a bucket: the `AWS_*` variables, lower-cased.
    pub blob_options: Vec<(String, String)>,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    pub introspection: Introspection,
    pub metrics: Metrics,
    /// The bearer token `/metrics` wants, if any.
    pub metrics_token: Option<SecretString>,
    /// How long a GraphQL request may run once its body has arrived.
    pub request_timeout: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl From<Options> for Settings {
    fn from(options: Options) -> Self {
        let database_url = options
            .database_url
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| format!("sqlite://{}", options.data_dir.join("tickets.db").display()));
        Settings {
            database_url,
            listen: options.listen,
            data_dir: options.data_dir,
            jwt_secret: options.jwt_secret.filter(|s| !s.is_empty()).map(SecretString::from),
            master_keys: options.master_keys.filter(|s| !s.is_empty()).map(SecretString::from),
            max_upload_bytes: options.max_upload_bytes,
            blob_store: options.blob_store,
            blob_options: std::env::vars()
                .filter(|(key, _)| key.starts_with("AWS_"))
                .map(|(key, value)| (key.to_ascii_lowercase(), value))
                .collect(),
            admin_email: options.admin_email.filter(|s| !s.is_empty()),
            admin_password: options.admin_password.filter(|s| !s.is_empty()).map(SecretString::from),
            introspection: options.introspection,
            metrics: options.metrics,
            metrics_token: options.metrics_token.filter(|s| !s.is_empty()).map(SecretString::from),
            request_timeout: Duration::from_secs(options.request_timeout),
            trusted_proxies: options.trusted_proxies,
        }
    }
}

impl Settings {
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }

    /// Settings for tests: SQLite or PostgreSQL at `database_url`, port 0.
    pub fn for_tests(database_url: String, data_dir: PathBuf) -> Self {
        Settings {
            database_url,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            jwt_secret: Some(SecretString::from("test-secret-test-secret-test-secret-0123")),
            master_keys: Some(SecretString::from(commands::cipher::MasterKeys::generate("test").1)),
            max_upload_bytes: 10 * 1024 * 1024,
            blob_store: "file".to_owned(),
            blob_options: Vec::new(),
            admin_email: None,
            admin_password: None,
            introspection: Introspection::Open,
            metrics: Metrics::Open,
            metrics_token: None,
            request_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}
