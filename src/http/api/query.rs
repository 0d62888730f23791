//! Query parameters an operation does not take are refused (422 naming
//! each), never silently ignored: a filter misspelt must not return
//! everything. What each operation takes is read from the OpenAPI document
//! the handlers declare, so the check and the documentation cannot
//! disagree; handlers that read a query also refuse unknown keys
//! themselves (`deny_unknown_fields`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, FieldErrors};

/// The query parameters of every documented operation, by method and path
/// template (`GET /servers/{fqdn}`).
#[derive(Clone, Default)]
pub struct Documented(Arc<HashMap<(String, String), BTreeSet<String>>>);

impl Documented {
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut taken = HashMap::new();
        let doc = serde_json::to_value(doc).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, operation) in item {
                let names: BTreeSet<String> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                taken.insert((method.to_ascii_uppercase(), path.clone()), names);
            }
        }
        Self(Arc::new(taken))
    }

    /// The keys of `query` that the operation does not take, or `None`
    /// when the operation is not documented.
    fn unknown(&self, method: &str, path: &str, query: &str) -> Option<(Vec<String>, String)> {
        let taken = self.0.get(&(method.to_string(), path.to_string()))?;
        let keys: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let mut unknown: Vec<String> = keys
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !taken.contains(k))
            .collect();
        unknown.dedup();
        let takes = if taken.is_empty() {
            "this endpoint takes no query parameters".to_string()
        } else {
            format!(
                "this endpoint takes: {}",
                taken.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        Some((unknown, takes))
    }
}

/// Refuses a request whose query names a parameter its operation does not
/// take.
pub async fn refuse_unknown(
    State(documented): State<Documented>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(query), Some(matched)) = (req.uri().query(), matched.as_ref()) {
        let full = matched.as_str();
        let path = full.strip_prefix("/api/v1").unwrap_or(full);
        if let Some((unknown, takes)) = documented.unknown(req.method().as_str(), path, query)
            && !unknown.is_empty()
        {
            let mut fields = FieldErrors::new();
            for key in unknown {
                fields.insert(key, vec![format!("unknown query parameter; {takes}")]);
            }
            return ApiError::invalid_fields(fields).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let mut taken = HashMap::new();
        taken.insert(
            ("GET".to_string(), "/servers".to_string()),
            BTreeSet::from(["limit".to_string(), "search".to_string()]),
        );
        taken.insert(
            ("GET".to_string(), "/servers/{fqdn}".to_string()),
            BTreeSet::new(),
        );
        let d = Documented(Arc::new(taken));
        let (unknown, takes) = d
            .unknown("GET", "/servers", "search=a&serach=b&limit=1")
            .unwrap();
        assert_eq!(unknown, ["serach"]);
        assert_eq!(takes, "this endpoint takes: limit, search");
        let (unknown, takes) = d.unknown("GET", "/servers/{fqdn}", "x=1").unwrap();
        assert_eq!(unknown, ["x"]);
        assert!(takes.contains("no query parameters"));
        assert!(d.unknown("POST", "/servers", "x=1").is_none());
    }
}
