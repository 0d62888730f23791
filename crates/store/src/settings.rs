//! Which database backs the store: the store's own settings, built by the
//! daemon's configuration.

use std::fmt;
use std::path::PathBuf;

use bootloader_core::model::redact_url;

/// Which database backs the store.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// Embedded SQLite file (the zero-set-up default).
    Sqlite { path: PathBuf },
    Postgres {
        target: PostgresTarget,
        max_connections: u32,
    },
}

#[derive(Clone, PartialEq, Eq)]
pub enum PostgresTarget {
    Url(String),
    Parts {
        host: String,
        port: u16,
        name: String,
        user: String,
        password: Option<String>,
    },
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => write!(f, "sqlite {}", path.display()),
            Self::Postgres {
                target: PostgresTarget::Url(url),
                ..
            } => write!(f, "postgres {}", redact_url(url)),
            Self::Postgres {
                target:
                    PostgresTarget::Parts {
                        host,
                        port,
                        name,
                        user,
                        ..
                    },
                ..
            } => write!(f, "postgres {user}@{host}:{port}/{name}"),
        }
    }
}
