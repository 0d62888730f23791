//! The Django template language, for the older system's profiles
//! (`templating: django`): it rendered every template with
//! `Template(text).render(Context(...))` from Django's default engine, so
//! values are HTML-escaped unless marked safe, a variable that does not
//! resolve prints as nothing, and `{% now %}` is in UTC. This engine
//! keeps those rules and renders the same bytes as Django for the tags
//! and filters it knows (checked against Django itself in
//! `tests/it/django_golden.rs`); a template using one it does not know is
//! refused when the profile is validated, where Django would have failed
//! at render time. Tags: `if`/`elif`/`else` (Django's operators and
//! precedence), `for` (`reversed`, unpacking, `empty`, `forloop`),
//! `with`, `now`, `firstof`, `comment`, `verbatim`, `autoescape`,
//! `spaceless`, `templatetag`, `{# #}`. Filters: `filters.rs`.

mod date;
mod filters;
mod parse;
mod render;
mod value;

use time::OffsetDateTime;

/// A compiled Django template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<parse::Node>,
}

/// What stopped a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DjangoRenderError {
    OutOfFuel,
    /// What Django raises while rendering (a filter argument that does
    /// not resolve, a loop over a number).
    Failed(String),
}

impl Template {
    /// Compiles `source`; the error is Django's message for it, with the
    /// line.
    pub fn compile(source: &str) -> Result<Self, String> {
        Ok(Self {
            nodes: parse::parse(source)?,
        })
    }

    /// Renders with the JSON object `ctx` as the context and `now` as the
    /// moment `{% now %}` shows.
    pub fn render(
        &self,
        ctx: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<String, DjangoRenderError> {
        let mut r = render::Renderer::new(ctx, now);
        let mut out = String::new();
        r.nodes(&self.nodes, &mut out).map_err(|e| match e {
            render::Stop::OutOfFuel => DjangoRenderError::OutOfFuel,
            render::Stop::Failed(why) => DjangoRenderError::Failed(why),
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
