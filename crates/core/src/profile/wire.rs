//! YAML text -> loose tree (`serde_json::Value`), plus the verbatim `version` text.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::parse::type_name;
use super::{DOCUMENT_PATH, ProfileErrors};

/// Largest accepted profile document (1 MiB).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Loads the single YAML document into a mapping, and reads `version` verbatim.
pub(crate) fn load(yaml: &str) -> Result<(Map<String, Value>, Option<String>), ProfileErrors> {
    if yaml.len() > MAX_INPUT_BYTES {
        return Err(ProfileErrors::single(
            DOCUMENT_PATH,
            format!(
                "input is {} bytes, more than the {MAX_INPUT_BYTES}-byte (1 MiB) limit",
                yaml.len()
            ),
        ));
    }
    let tree: Value = serde_saphyr::from_str_with_options(yaml, yaml_options())
        .map_err(|e| ProfileErrors::single(DOCUMENT_PATH, yaml_error(&e)))?;
    match tree {
        Value::Object(root) => Ok((root, version_text(yaml))),
        Value::Null => Err(ProfileErrors::single(
            DOCUMENT_PATH,
            "empty document: expected a profile mapping",
        )),
        other => Err(ProfileErrors::single(
            DOCUMENT_PATH,
            format!("expected a profile mapping, found {}", type_name(&other)),
        )),
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // `on`, `off`, `yes`, `no`, `y`, `n` stay strings (ipmi `parameters: on`).
        strict_booleans: true,
        with_snippet: false,
    }
}

fn yaml_error(e: &serde_saphyr::Error) -> String {
    let inner = e.without_snippet();
    match inner {
        serde_saphyr::Error::MultipleDocuments { .. } => {
            let at = inner
                .location()
                .map(|l| {
                    format!(
                        " (second document at line {}, column {})",
                        l.line(),
                        l.column()
                    )
                })
                .unwrap_or_default();
            format!("more than one YAML document; a profile is a single document{at}")
        }
        _ => format!("invalid YAML: {inner}"),
    }
}

/// `version` exactly as written. The loose tree turns `version: 0.10` into the
/// float 0.1, so read the scalar a second time as a string, which serde-saphyr
/// hands over verbatim.
fn version_text(yaml: &str) -> Option<String> {
    struct Text(String);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a scalar")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_str(V)
        }
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        version: Option<Text>,
    }
    serde_saphyr::from_str_with_options::<Probe>(yaml, yaml_options())
        .ok()
        .and_then(|p| p.version)
        .map(|t| t.0)
}
