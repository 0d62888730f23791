//! Template compilation (validation time) and rendering (deployment time).
//!
//! All templates are plain-text configs: auto-escaping is off, undefined values
//! are errors, and every render runs on a fuel budget so a runaway template
//! stops with an error instead of hanging or exhausting memory.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use super::{Profile, RenderError, Templating};

/// Variables the deployment engine puts in every render context. Templates may
/// only use these (plus things they define themselves and minijinja's globals).
/// `labels` is a map (`{{ labels.rack }}`); `nameservers` is a space-separated
/// string of DNS servers (as preseed expects), `nameserver` the first one.
pub const CONTEXT_VARIABLES: &[&str] = &[
    "agent_url",
    "callback_base",
    "deployment_id",
    "domain",
    "export_base",
    "fqdn",
    "gateway",
    "hostname",
    "interface",
    "ipaddress",
    "ipmi_host",
    "labels",
    "location",
    "mac_address",
    "mac_address_dashed",
    "nameserver",
    "nameservers",
    "netmask",
    "profile",
    "profile_version",
    "serial",
    "server_id",
];

/// Fuel for one render (minijinja: ~1 per instruction, ~1 per 64 bytes of data),
/// bounding a render to a few million steps and roughly 128 MiB of data.
pub const RENDER_FUEL: u64 = 2_000_000;

/// A minijinja environment configured for profiles. Rendered files keep their
/// final newline (Jinja would drop it), so they match the YAML text exactly.
pub(crate) fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(RENDER_FUEL));
    env
}

/// An environment holding all of a profile's templates (so `{% include %}`
/// between them works).
fn profile_environment(templates: &BTreeMap<String, String>) -> Environment<'_> {
    let mut env = environment();
    for (name, source) in templates {
        // Syntax errors were reported by validation; a broken template simply
        // stays absent and rendering it reports "unknown template".
        let _ = env.add_template(name, source);
    }
    env
}

/// Renders the profile template `name` with `ctx` (a JSON object of context variables).
pub fn render_template(
    profile: &Profile,
    name: &str,
    ctx: &serde_json::Value,
) -> Result<String, RenderError> {
    if !profile.templates.contains_key(name) {
        return Err(RenderError::UnknownTemplate(name.to_string()));
    }
    let env = profile_environment(&profile.templates);
    let tmpl = env.get_template(name).map_err(render_error)?;
    tmpl.render(minijinja::Value::from(minijinja::value::Serde(ctx)))
        .map_err(render_error)
}

/// Renders a one-off template string (a `filename` or an echo `message`) with `ctx`.
pub fn render_str(source: &str, ctx: &serde_json::Value) -> Result<String, RenderError> {
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(render_error)?;
    tmpl.render(minijinja::Value::from(minijinja::value::Serde(ctx)))
        .map_err(render_error)
}

/// Renders Django template `source` (a profile with `templating: django`).
pub(crate) fn render_django(
    source: &str,
    ctx: &serde_json::Value,
    now: time::OffsetDateTime,
) -> Result<String, RenderError> {
    let template = super::django::Template::compile(source).map_err(RenderError::Syntax)?;
    template.render(ctx, now).map_err(|e| match e {
        super::django::DjangoRenderError::OutOfFuel => RenderError::OutOfFuel,
        super::django::DjangoRenderError::Failed(why) => RenderError::Failed(why),
    })
}

/// `detail (line N)` for a minijinja error, without its kind prefix.
pub(crate) fn describe(err: &minijinja::Error) -> String {
    let detail = err
        .detail()
        .map_or_else(|| err.kind().to_string(), str::to_string);
    match err.line() {
        Some(line) => format!("{detail} (line {line})"),
        None => detail,
    }
}

fn render_error(err: minijinja::Error) -> RenderError {
    match err.kind() {
        ErrorKind::SyntaxError => RenderError::Syntax(describe(&err)),
        ErrorKind::UndefinedError => RenderError::Undefined(describe(&err)),
        ErrorKind::OutOfFuel => RenderError::OutOfFuel,
        _ => RenderError::Failed(describe(&err)),
    }
}

/// Validation-time checker: compiles templates and checks their variables.
pub(crate) struct Checker<'s> {
    env: Environment<'s>,
    globals: BTreeSet<String>,
    templating: Templating,
}

impl<'s> Checker<'s> {
    /// Compiles all named templates; returns the checker and `(name, message)`
    /// for each template that failed to compile.
    pub(crate) fn new(
        templates: &'s BTreeMap<String, String>,
        templating: Templating,
    ) -> (Self, Vec<(&'s str, String)>) {
        let mut env = environment();
        let mut failures = Vec::new();
        for (name, source) in templates {
            let compiled = match templating {
                Templating::Jinja => env.add_template(name, source).map_err(|e| describe(&e)),
                Templating::Django => super::django::Template::compile(source).map(|_| ()),
            };
            if let Err(e) = compiled {
                failures.push((name.as_str(), format!("syntax error: {e}")));
            }
        }
        let globals = env.globals().map(|(n, _)| n.to_string()).collect();
        (
            Self {
                env,
                globals,
                templating,
            },
            failures,
        )
    }

    /// Unknown-variable messages for the (successfully compiled) named template.
    /// (Django templates print nothing for a variable they lack, as Django
    /// did: none is refused.)
    pub(crate) fn check_named(&self, name: &str) -> Vec<String> {
        if self.templating == Templating::Django {
            return Vec::new();
        }
        match self.env.get_template(name) {
            Ok(t) => self.unknown_variables(t.undeclared_variables(false)),
            Err(_) => Vec::new(),
        }
    }

    /// Compiles an inline template; returns error messages (syntax or unknown variables).
    pub(crate) fn check_inline(&self, source: &str) -> Vec<String> {
        if self.templating == Templating::Django {
            return match super::django::Template::compile(source) {
                Ok(_) => Vec::new(),
                Err(e) => vec![format!("syntax error: {e}")],
            };
        }
        match self.env.template_from_str(source) {
            Ok(t) => self.unknown_variables(t.undeclared_variables(false)),
            Err(e) => vec![format!("syntax error: {}", describe(&e))],
        }
    }

    fn unknown_variables(&self, used: std::collections::HashSet<String>) -> Vec<String> {
        let mut unknown: Vec<String> = used
            .into_iter()
            .filter(|v| !CONTEXT_VARIABLES.contains(&v.as_str()) && !self.globals.contains(v))
            .collect();
        unknown.sort();
        unknown
            .into_iter()
            .map(|v| {
                format!(
                    "unknown variable {v:?} (known: {})",
                    CONTEXT_VARIABLES.join(", ")
                )
            })
            .collect()
    }
}
