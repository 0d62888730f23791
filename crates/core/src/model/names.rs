//! Names that identify inventory objects in URLs: FQDNs and simple names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error(
        "{0:?} is not a valid DNS label (letters, digits and '-', not at either end, at most 63)"
    )]
    BadLabel(String),
    #[error("must have at least two labels (host.domain)")]
    NotQualified,
    #[error("is an IP address, not a name (the last label is all digits)")]
    NumericTld,
    #[error(
        "may contain only letters, digits, '.', '_', '-', '@' and '+', and must start with a letter or digit"
    )]
    BadCharacters,
}

/// A fully qualified domain name, stored lower-case without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(String);

impl Fqdn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first label.
    pub fn hostname(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }

    /// Everything after the first label.
    pub fn domain(&self) -> &str {
        self.0.split_once('.').map(|(_, d)| d).unwrap_or("")
    }
}

impl FromStr for Fqdn {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 253 {
            return Err(NameError::TooLong(253));
        }
        let mut labels = 0;
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(NameError::BadLabel(label.to_string()));
            }
            labels += 1;
        }
        if labels < 2 {
            return Err(NameError::NotQualified);
        }
        // No top-level domain is all digits (RFC 3696 2): `10.0.0.5` is an
        // address.
        if s.rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(NameError::NumericTld);
        }
        Ok(Self(s))
    }
}

/// A short identifier for locations, labels and users: 1 to 64 characters of
/// letters, digits, `.`, `_`, `-`, `@` and `+` (the older system's user
/// names are Django's, often an e-mail address), starting with a letter or
/// digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 64 {
            return Err(NameError::TooLong(64));
        }
        let first_ok = s.as_bytes()[0].is_ascii_alphanumeric();
        let rest_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+'));
        if !(first_ok && rest_ok) {
            return Err(NameError::BadCharacters);
        }
        Ok(Self(s.to_string()))
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype_impls!(Fqdn);
string_newtype_impls!(Name);

#[cfg(test)]
mod tests {
    use super::*;

    fn fqdn(input: &str) -> Result<String, NameError> {
        input.parse::<Fqdn>().map(|f| f.to_string())
    }

    #[test]
    fn fqdns() {
        assert_eq!(
            fqdn("Node01.Rack1.Example.com."),
            Ok("node01.rack1.example.com".into())
        );
        assert_eq!(fqdn("node01"), Err(NameError::NotQualified));
        assert_eq!(fqdn(""), Err(NameError::Empty));
        assert_eq!(
            fqdn("-a.example.com"),
            Err(NameError::BadLabel("-a".into()))
        );
        assert_eq!(fqdn("a..com"), Err(NameError::BadLabel("".into())));
        assert_eq!(fqdn("a_b.com"), Err(NameError::BadLabel("a_b".into())));
        assert_eq!(fqdn("10.0.0.5"), Err(NameError::NumericTld));
        assert_eq!(fqdn("node1.123"), Err(NameError::NumericTld));
        assert_eq!(fqdn("::1"), Err(NameError::BadLabel("::1".into())));
        assert_eq!(fqdn("1.example.com"), Ok("1.example.com".into()));
        let f: Fqdn = "db1.dc1.example.org".parse().unwrap();
        assert_eq!((f.hostname(), f.domain()), ("db1", "dc1.example.org"));
    }

    #[test]
    fn names() {
        assert!("dc1".parse::<Name>().is_ok());
        assert!("rack-1.row_2".parse::<Name>().is_ok());
        assert_eq!("".parse::<Name>(), Err(NameError::Empty));
        assert_eq!("-x".parse::<Name>(), Err(NameError::BadCharacters));
        assert_eq!("a b".parse::<Name>(), Err(NameError::BadCharacters));
        assert_eq!("@x".parse::<Name>(), Err(NameError::BadCharacters));
        for django_user in ["j.doe@example.com", "ops+oncall", "a_b-c.d"] {
            assert!(django_user.parse::<Name>().is_ok(), "{django_user}");
        }
        assert_eq!("x".repeat(65).parse::<Name>(), Err(NameError::TooLong(64)));
    }
}
