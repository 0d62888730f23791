//! Profiles: the list, a profile with line numbers, its versions and a
//! diff between two, and the upload form with "validate without saving"
//! and each error at its line.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::ConsoleState;
use super::extract::{Path, Query};
use super::pages::{pager, require_write, window};
use super::render::{Page, describe, error_page};
use super::session::{Change, Viewer, done};
use crate::ops::{self, Error};
use bootloader_store::ProfileFilter;

#[derive(Serialize)]
struct ProfileRow {
    id: i64,
    name: String,
    version: String,
    actions: u64,
    created_at: String,
}

fn profile_row(p: &bootloader_store::StoredProfile) -> ProfileRow {
    ProfileRow {
        id: p.id,
        name: p.name.clone(),
        version: p.version.clone(),
        actions: p.action_count,
        created_at: p
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileListQuery {
    #[serde(default)]
    name: String,
    offset: Option<u64>,
}

pub async fn profiles(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<ProfileListQuery>,
) -> Response {
    let filter = ProfileFilter {
        name: (!q.name.is_empty()).then(|| q.name.clone()),
        ..Default::default()
    };
    let offset = q.offset.unwrap_or(0);
    let listing = match ops::profiles::list(
        &state.app.ops,
        &viewer.actor(),
        &filter,
        window(Some(offset)),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return error_page(&state, e),
    };
    let rows: Vec<ProfileRow> = listing.items.iter().map(profile_row).collect();
    let pages = pager(
        "/ui/profiles",
        &[("name", &q.name)],
        offset,
        rows.len(),
        listing.total,
    );
    Page::new(&state, &viewer, "profiles.html")
        .with("section", "profiles")
        .with("profiles", rows)
        .with("pager", pages)
        .with("name", &q.name)
        .render()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// Another version's id to compare with.
    diff: Option<i64>,
}

/// One line of a comparison: kept, removed (`-`) or added (`+`).
#[derive(Serialize, Debug, PartialEq)]
struct DiffLine {
    mark: char,
    old: Option<usize>,
    new: Option<usize>,
    text: String,
}

/// The lines of `old` and `new` as kept, removed and added, by their
/// longest common subsequence (profiles are small: a few hundred lines).
fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        // Too large to compare line by line here: all out, all in.
        let mut out: Vec<DiffLine> = a
            .iter()
            .enumerate()
            .map(|(i, t)| DiffLine {
                mark: '-',
                old: Some(i + 1),
                new: None,
                text: t.to_string(),
            })
            .collect();
        out.extend(b.iter().enumerate().map(|(j, t)| DiffLine {
            mark: '+',
            old: None,
            new: Some(j + 1),
            text: t.to_string(),
        }));
        return out;
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(DiffLine {
                mark: ' ',
                old: Some(i + 1),
                new: Some(j + 1),
                text: a[i].to_string(),
            });
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(DiffLine {
                mark: '+',
                old: None,
                new: Some(j + 1),
                text: b[j].to_string(),
            });
            j += 1;
        } else {
            out.push(DiffLine {
                mark: '-',
                old: Some(i + 1),
                new: None,
                text: a[i].to_string(),
            });
            i += 1;
        }
    }
    out
}

pub async fn profile(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Query(q): Query<ProfileQuery>,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let p = match ops::profiles::get(ops, &actor, &id.to_string()).await {
        Ok(p) => p,
        Err(e) => return error_page(&state, e),
    };
    let filter = ProfileFilter {
        name: Some(p.name.clone()),
        ..Default::default()
    };
    let versions: Vec<ProfileRow> = ops::profiles::list(ops, &actor, &filter, window(None))
        .await
        .map(|l| l.items.iter().map(profile_row).collect())
        .unwrap_or_default();
    let compared = match q.diff {
        Some(other) => match ops::profiles::get(ops, &actor, &other.to_string()).await {
            Ok(o) => Some((profile_row(&o), diff(&o.source, &p.source))),
            Err(e) => return error_page(&state, e),
        },
        None => None,
    };
    let lines: Vec<&str> = p.source.lines().collect();
    Page::new(&state, &viewer, "profile.html")
        .with("section", "profiles")
        .with("p", profile_row(&p))
        .with("lines", lines)
        .with("versions", versions)
        .with("compared", compared)
        .render()
}

pub async fn new_profile(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    if let Err(r) = require_write(&state, &viewer) {
        return *r;
    }
    Page::new(&state, &viewer, "profile_form.html")
        .with("section", "profiles")
        .render()
}

/// Errors by line: `workflow.preparing[2]` is found in the text where its
/// key is, as near as the path allows.
#[derive(Serialize)]
struct LineError {
    line: Option<usize>,
    path: String,
    message: String,
}

fn errors_by_line(text: &str, fields: &BTreeMap<String, Vec<String>>) -> Vec<LineError> {
    let mut out: Vec<LineError> = fields
        .iter()
        .flat_map(|(path, messages)| {
            messages.iter().map(move |m| LineError {
                line: bootloader_core::profile::line_of(text, path, m),
                path: path.clone(),
                message: m.clone(),
            })
        })
        .collect();
    out.sort_by_key(|e| e.line.unwrap_or(0));
    out
}

pub async fn upload_profile(
    State(state): State<ConsoleState>,
    Change { viewer, posted }: Change,
) -> Response {
    let text = posted
        .get("source")
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let only_check = posted.get("_action") == Some("validate");
    let result = if only_check {
        bootloader_core::profile::parse_upload(&text)
            .map(|_| None)
            .map_err(ops::profiles::profile_errors)
    } else {
        ops::profiles::upload(&state.app.ops, &viewer.actor(), &text)
            .await
            .map(Some)
    };
    match result {
        Ok(Some(p)) => done(
            &format!("/ui/profiles/{}", p.id),
            &format!("Profile {} {} uploaded.", p.name, p.version),
        ),
        Ok(None) => Page::new(&state, &viewer, "profile_form.html")
            .with("section", "profiles")
            .with("source", &text)
            .with("valid", true)
            .render(),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let body = e.into_body();
            let lines: Vec<&str> = text.lines().collect();
            let errors = errors_by_line(&text, &body.fields);
            Page::new(&state, &viewer, "profile_form.html")
                .with("section", "profiles")
                .with("source", &text)
                .with("lines", lines)
                .with("line_errors", errors)
                .with("error", body.message)
                .status(status)
                .render()
        }
        Err(e) => error_page(&state, e),
    }
}

/// Deletes one version (the API's `DELETE /profiles/{id}`); one that a
/// deployment used is kept, and the message says why.
pub async fn delete_profile(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    Change { viewer, .. }: Change,
) -> Response {
    let ops = &state.app.ops;
    let actor = viewer.actor();
    let named = match ops::profiles::get(ops, &actor, &id.to_string()).await {
        Ok(p) => format!("{}=={}", p.name, p.version),
        Err(e) => return error_page(&state, e),
    };
    match ops::profiles::delete(ops, &actor, &id.to_string()).await {
        Ok(()) => done("/ui/profiles", &format!("Profile {named} deleted.")),
        Err(e @ Error::Forbidden(_)) => error_page(&state, e),
        Err(e) => done(
            &format!("/ui/profiles/{id}"),
            &format!("Profile {named} not deleted: {}", describe(e)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_keeps_removes_and_adds_lines() {
        let d = diff("a\nb\nc\n", "a\nc\nd\n");
        let marks: String = d.iter().map(|l| l.mark).collect();
        assert_eq!(marks, " - +", "{d:?}");
        assert_eq!(d[3].new, Some(3));
        assert_eq!(d[1].old, Some(2));
    }
}
