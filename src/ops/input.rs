//! Reading the operations' input where it arrives as text: a JSON body
//! (REST) or a command's fields (broker), and the keys that name objects.
//! Both adapters read them here, so both report a bad field the same way.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Error;

/// Deserialises `bytes`, naming the path of a field that does not fit
/// (`bmc.port`); a body that is not JSON at all is a bad request.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::BadRequest(format!("body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            Error::invalid_field("(body)", strip_position(&inner.to_string()))
        } else {
            Error::invalid_field(path, strip_position(&inner.to_string()))
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Parses a key naming an object (a path segment, a command's field) into
/// a domain type; a malformed one names nothing, so it is not found.
pub fn path_key<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, Error> {
    raw.parse()
        .map_err(|_| Error::NotFound(format!("{what} {raw:?} not found")))
}

/// A deployment's id; one that is not a number names no deployment.
pub fn deployment_id(raw: &str) -> Result<i64, Error> {
    raw.parse()
        .map_err(|_| Error::NotFound(format!("deployment {raw:?} not found")))
}

/// Rejects control characters (NUL breaks PostgreSQL text) and caps the
/// length of free text such as notes and descriptions.
pub fn check_text(v: &mut super::Validator, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        v.error(field, format!("at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        v.error(field, "must not contain control characters");
    }
}

/// For PATCH fields where `null` means "remove" and absence means "keep":
/// use with `#[serde(default, deserialize_with = "double_option")]`.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
