//! Request bodies as the older API read them: JSON objects or HTML form
//! fields (`application/x-www-form-urlencoded`, as Python's `requests`
//! sends `data={...}`), and each field read the way its serializer read
//! it, with the messages its clients know ("This field is required.").

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::error::LegacyError;

/// The fields of one request body.
#[derive(Debug, Default)]
pub struct Fields {
    values: Map<String, Value>,
    /// PATCH: a field that is absent is not required.
    partial: bool,
    errors: BTreeMap<String, Vec<String>>,
}

/// Parses `body` by its content type; an empty body is no fields.
pub fn parse(headers: &HeaderMap, body: &[u8], partial: bool) -> Result<Fields, LegacyError> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let values = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else if kind == "application/json" || kind.ends_with("+json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(LegacyError::non_field(format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    kind_of(&other)
                )));
            }
            Err(e) => return Err(LegacyError::Detail(400, format!("JSON parse error - {e}"))),
        }
    } else if kind == "application/x-www-form-urlencoded" || kind.is_empty() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| LegacyError::Detail(400, format!("form parse error - {e}")))?;
        // A repeated field keeps its last value, as Django's QueryDict
        // hands a serializer.
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect()
    } else {
        return Err(LegacyError::Detail(
            415,
            format!("Unsupported media type \"{kind}\" in request."),
        ));
    };
    Ok(Fields {
        values,
        partial,
        errors: BTreeMap::new(),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Null => "NoneType",
        Value::Object(_) => "dict",
    }
}

impl Fields {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    /// Whether the body names `field` at all.
    pub fn has(&self, field: &str) -> bool {
        self.values.contains_key(field)
    }

    /// The raw value of `field`.
    pub fn raw(&self, field: &str) -> Option<&Value> {
        self.values.get(field)
    }

    fn missing(&mut self, field: &str, required: bool) {
        if required && !self.partial {
            self.error(field, "This field is required.");
        }
    }

    /// A text field (a number is taken as its text). `None` when absent
    /// (an error if `required`), blank (an error unless `blank`) or
    /// `null` (an error unless `null`).
    pub fn text(
        &mut self,
        field: &str,
        required: bool,
        blank: bool,
        null: bool,
        max: usize,
    ) -> Option<String> {
        let value = match self.values.get(field) {
            None => {
                self.missing(field, required);
                return None;
            }
            Some(Value::Null) => {
                if !null {
                    self.error(field, "This field may not be null.");
                }
                return None;
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                self.error(field, "Not a valid string.");
                return None;
            }
        };
        if value.trim().is_empty() && !blank {
            self.error(field, "This field may not be blank.");
            return None;
        }
        if value.chars().count() > max {
            self.error(
                field,
                format!("Ensure this field has no more than {max} characters."),
            );
            return None;
        }
        Some(value)
    }

    /// A required, non-blank text field of at most 255 characters.
    pub fn name(&mut self, field: &str) -> Option<String> {
        self.text(field, true, false, false, 255)
    }

    /// An integer field (or its text).
    pub fn integer(&mut self, field: &str, required: bool) -> Option<i64> {
        let parsed = match self.values.get(field) {
            None => {
                self.missing(field, required);
                return None;
            }
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        if parsed.is_none() {
            self.error(field, "A valid integer is required.");
        }
        parsed
    }

    /// A boolean field, spelled as Django REST framework accepted it.
    pub fn boolean(&mut self, field: &str, required: bool) -> Option<bool> {
        let value = match self.values.get(field) {
            None => {
                self.missing(field, required);
                return None;
            }
            Some(v) => v.clone(),
        };
        let text = match &value {
            Value::Bool(b) => return Some(*b),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        match text.as_str() {
            "t" | "T" | "y" | "Y" | "yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On"
            | "ON" | "1" => Some(true),
            "f" | "F" | "n" | "N" | "no" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" | "0" => Some(false),
            _ => {
                self.error(field, format!("\"{text}\" is not a valid boolean."));
                None
            }
        }
    }

    /// The collected field errors as a 400, or nothing wrong.
    pub fn finish(&mut self) -> Result<(), LegacyError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(LegacyError::Fields(std::mem::take(&mut self.errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn fields(kind: &str, body: &str) -> Result<Fields, LegacyError> {
        let mut h = HeaderMap::new();
        if !kind.is_empty() {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(kind).unwrap());
        }
        parse(&h, body.as_bytes(), false)
    }

    #[test]
    fn json_and_forms_read_alike() {
        for (kind, body) in [
            (
                "application/json",
                r#"{"server": "n1.example.com", "profile": 3}"#,
            ),
            (
                "application/x-www-form-urlencoded",
                "server=n1.example.com&profile=3",
            ),
            ("", "server=n1.example.com&profile=3"),
        ] {
            let mut f = fields(kind, body).unwrap();
            assert_eq!(
                f.name("server").as_deref(),
                Some("n1.example.com"),
                "{kind}"
            );
            assert_eq!(f.integer("profile", true), Some(3), "{kind}");
            f.finish().unwrap();
        }
    }

    #[test]
    fn messages_are_the_ones_clients_know() {
        let mut f = fields(
            "application/json",
            r#"{"fqdn": " ", "serial": null, "n": "x", "b": "maybe", "long": "aaaa"}"#,
        )
        .unwrap();
        assert_eq!(f.name("fqdn"), None);
        assert_eq!(f.name("location"), None);
        assert_eq!(f.text("serial", false, true, true, 255), None);
        assert_eq!(f.integer("n", true), None);
        assert_eq!(f.boolean("b", true), None);
        assert_eq!(f.text("long", true, false, false, 3), None);
        let Err(LegacyError::Fields(e)) = f.finish() else {
            panic!("expected field errors")
        };
        assert_eq!(e["fqdn"], ["This field may not be blank."]);
        assert_eq!(e["location"], ["This field is required."]);
        assert!(!e.contains_key("serial"));
        assert_eq!(e["n"], ["A valid integer is required."]);
        assert_eq!(e["b"], ["\"maybe\" is not a valid boolean."]);
        assert_eq!(
            e["long"],
            ["Ensure this field has no more than 3 characters."]
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        assert!(matches!(
            fields("application/json", "[1]"),
            Err(LegacyError::NonField(m)) if m.contains("but got list")
        ));
        assert!(matches!(
            fields("application/json", "{"),
            Err(LegacyError::Detail(400, m)) if m.starts_with("JSON parse error")
        ));
        assert!(matches!(
            fields("text/plain", "x"),
            Err(LegacyError::Detail(415, _))
        ));
        assert!(
            fields("text/plain", "").is_ok(),
            "an empty body is no fields"
        );
    }

    #[test]
    fn patch_requires_nothing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let mut f = parse(&h, b"{}", true).unwrap();
        assert_eq!(f.name("fqdn"), None);
        f.finish().unwrap();
    }
}
