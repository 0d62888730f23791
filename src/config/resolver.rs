//! Layering one setting: command line, else environment, else file,
//! else the table's default (`keys.rs`), with the table's range checked
//! and the value recorded with its source (secrets redacted) for
//! `check-config`.

use std::fmt;
use std::path::PathBuf;

use bootloader_core::model::redact_url;

use super::keys::{self, Secrecy};
use super::{EnvLookup, Setting, Source};

/// Layers one value at a time and records its source.
pub(super) struct Resolver<'a> {
    pub(super) env: EnvLookup<'a>,
    pub(super) file_path: Option<PathBuf>,
    pub(super) settings: Vec<Setting>,
    pub(super) errors: Vec<String>,
}

/// How a value is read from an environment variable.
pub(super) trait EnvValue: Sized + Clone + fmt::Display {
    fn from_env(s: &str) -> Result<Self, String>;
    /// The value as a whole number, for the table's ranges.
    fn number(&self) -> Option<u64> {
        None
    }
}

impl EnvValue for String {
    fn from_env(s: &str) -> Result<Self, String> {
        Ok(s.to_string())
    }
}

impl EnvValue for bool {
    fn from_env(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            // "yep" and "yup" are the older system's (GRAVATAR_PROXY).
            "1" | "true" | "yes" | "yep" | "yup" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(format!("{s:?} is not a boolean (true/false, yes/no, 1/0)")),
        }
    }
}

macro_rules! env_value_from_str {
    ($($t:ty),*) => {$(
        impl EnvValue for $t {
            fn from_env(s: &str) -> Result<Self, String> {
                s.trim().parse().map_err(|e| format!("{s:?}: {e}"))
            }
        }
    )*};
}
env_value_from_str!(f64);

macro_rules! env_value_number {
    ($($t:ty),*) => {$(
        impl EnvValue for $t {
            fn from_env(s: &str) -> Result<Self, String> {
                s.trim().parse().map_err(|e| format!("{s:?}: {e}"))
            }
            fn number(&self) -> Option<u64> {
                Some(u64::from(*self))
            }
        }
    )*};
}
env_value_number!(u8, u16, u32);

impl Resolver<'_> {
    /// The value of setting `key` (see `keys.rs` for its environment
    /// names, secrecy and default): the command line's, else the
    /// environment's, else the file's, else the table's default; recorded
    /// with its source.
    pub(super) fn pick<T: EnvValue>(
        &mut self,
        key: &'static str,
        cli: Option<(T, &'static str)>,
        file: Option<T>,
    ) -> Option<T> {
        let default = match keys::lookup(key).and_then(|k| k.default) {
            Some(text) => match T::from_env(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.errors.push(format!(
                        "{key}: the default {text:?} does not parse: {e} (a bug)"
                    ));
                    None
                }
            },
            None => None,
        };
        self.layer(key, cli, file, default)
    }

    /// `pick` for a setting whose default is computed from others.
    pub(super) fn pick_or<T: EnvValue>(
        &mut self,
        key: &'static str,
        cli: Option<(T, &'static str)>,
        file: Option<T>,
        default: T,
    ) -> T {
        self.layer(key, cli, file, Some(default.clone()))
            .unwrap_or(default)
    }

    fn layer<T: EnvValue>(
        &mut self,
        key: &'static str,
        cli: Option<(T, &'static str)>,
        file: Option<T>,
        default: Option<T>,
    ) -> Option<T> {
        let (envs, secrecy) = match keys::lookup(key) {
            Some(k) => (k.env, k.secrecy),
            None => {
                self.errors
                    .push(format!("{key}: not in the settings table (a bug)"));
                (&[][..], Secrecy::Secret)
            }
        };
        let mut chosen: Option<(T, Source)> = None;
        if let Some((v, flag)) = cli {
            chosen = Some((v, Source::Cli(flag)));
        }
        if chosen.is_none() {
            for var in envs {
                // An empty variable (common in env files) counts as unset.
                if let Some(raw) = (self.env)(var).filter(|v| !v.trim().is_empty()) {
                    match T::from_env(&raw) {
                        Ok(v) => chosen = Some((v, Source::Env(var))),
                        Err(e) => self.errors.push(format!("{key} (from env {var}): {e}")),
                    }
                    break;
                }
            }
        }
        if chosen.is_none()
            && let Some(v) = file
        {
            let path = self.file_path.clone().unwrap_or_default();
            chosen = Some((v, Source::File(path)));
        }
        if chosen.is_none()
            && let Some(v) = default
        {
            chosen = Some((v, Source::Default));
        }
        let (value, source) = match chosen {
            Some((v, s)) => (Some(v), s),
            None => (None, Source::Default),
        };
        if let (Some(n), Some((least, most))) = (
            value.as_ref().and_then(EnvValue::number),
            keys::lookup(key).and_then(|k| k.range),
        ) && (n < least || most.is_some_and(|m| n > m))
        {
            self.errors.push(match most {
                Some(m) => format!("{key} ({n}) must be between {least} and {m}"),
                None => format!("{key} ({n}) must be at least {least}"),
            });
        }
        let shown = match (&value, secrecy) {
            (None, _) => "(unset)".to_string(),
            (Some(_), Secrecy::Secret) => "<redacted>".to_string(),
            (Some(v), Secrecy::Url) => redact_url(&v.to_string()),
            (Some(v), Secrecy::Plain) => v.to_string(),
        };
        self.settings.push(Setting {
            key,
            value: shown,
            source,
        });
        value
    }
}
