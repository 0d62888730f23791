//! A string that must not reach logs: its `Debug` is redacted, so a stray
//! `?spec` in a log line cannot leak a BMC password.

use std::fmt;

use serde::{Deserialize, Deserializer};

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Secret {}

/// Hides the password of `scheme://user:password@host/...` and of a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user info ends at the last '@' before any query or fragment; a
    // password may itself hold '/' or '@'.
    let (before_query, query) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let head = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host_and_path) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>{host_and_path}"),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    let query: String = if query.is_empty() {
        String::new()
    } else {
        let (sep, params) = query.split_at(1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
                _ => p.to_string(),
            })
            .collect();
        format!("{sep}{}", params.join("&"))
    };
    format!("{scheme}://{head}{query}")
}

#[cfg(test)]
mod tests {
    use super::{Secret, redact_url};

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redaction_covers_awkward_urls() {
        for (url, hidden) in [
            ("amqp://u:pa/ss@h/v", "pa/ss"),
            ("postgres://app:p@ss@db:5432/bl", "p@ss"),
            ("postgres://db/bl?user=app&password=s3cret", "s3cret"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(hidden), "{url} -> {shown}");
            assert!(shown.contains("<redacted>"), "{url} -> {shown}");
        }
        assert_eq!(redact_url("postgres://db/bl"), "postgres://db/bl");
        assert_eq!(redact_url("amqp://guest@h/"), "amqp://guest@h/");
    }
}
