//! Loose tree -> typed [`Profile`], collecting every error with its YAML path
//! instead of stopping at the first. Action-level parsing is in `actions.rs`.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::template::Checker;
use super::{Duration, Profile, ProfileError, ProfileErrors, Step, StepName, Templating, Workflow};

const TOP_KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "name",
    "version",
    "timeout",
    "workflow",
    "templates",
    "templating",
];
const STEP_KEYS: &[&str] = &["timeout", "actions"];
const TEMPLATE_KEYS: &[&str] = &["type", "contents"];

pub(crate) fn parse_profile(yaml: &str, upload: bool) -> Result<Profile, ProfileErrors> {
    let (root, version_text) = super::wire::load(yaml)?;
    let mut walker = Walker::default();
    let profile = walker.profile(&root, version_text);
    if upload {
        walker.errors.append(&mut walker.unsupported);
    }
    if walker.errors.is_empty() {
        Ok(profile)
    } else {
        Err(ProfileErrors(walker.errors))
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[derive(Default)]
pub(super) struct Walker {
    pub(super) errors: Vec<ProfileError>,
    /// What the document may say but no driver can do: an error at upload
    /// only, so that profiles stored before still read.
    pub(super) unsupported: Vec<ProfileError>,
    /// callback name -> path of its first use
    pub(super) callbacks: HashMap<String, String>,
}

impl Walker {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ProfileError::new(path, message));
    }

    /// Reports keys of `map` not in `allowed`.
    pub(super) fn check_keys(&mut self, map: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    join(path, key),
                    format!(
                        "unknown key {key:?} (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    /// A required string field.
    pub(super) fn req_str<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        match map.get(key) {
            None => {
                self.err(join(path, key), "missing field");
                None
            }
            Some(v) => self.as_str(v, &join(path, key)),
        }
    }

    /// An optional string field (null counts as absent).
    pub(super) fn opt_str<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.as_str(v, &join(path, key)),
        }
    }

    pub(super) fn as_str<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                let hint = if matches!(other, Value::Number(_) | Value::Bool(_)) {
                    " (quote it)"
                } else {
                    ""
                };
                self.err(
                    path,
                    format!("expected a string, found {}{hint}", type_name(other)),
                );
                None
            }
        }
    }

    /// A required field that must equal `expected`.
    pub(super) fn constant(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        expected: &str,
    ) {
        if let Some(s) = self.req_str(map, path, key)
            && s != expected
        {
            self.err(
                join(path, key),
                format!("must be {expected:?}, found {s:?}"),
            );
        }
    }

    /// A required string field that must be one of `choices`.
    pub(super) fn choice<T: Copy>(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.req_str(map, path, key)?;
        self.pick(join(path, key), what, s, choices)
    }

    /// The value `given` names among `choices`, or an error at `path`
    /// listing them.
    pub(super) fn pick<T: Copy>(
        &mut self,
        path: String,
        what: &str,
        given: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == given) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            path,
            format!(
                "unknown {what} {given:?} (expected one of: {})",
                names.join(", ")
            ),
        );
        None
    }

    pub(super) fn opt_duration(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<Duration> {
        let path = join(path, key);
        let text = match map.get(key)? {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_u64() => n.to_string(),
            other => {
                let found = match other {
                    Value::Number(n) => format!("the number {n}"),
                    v => type_name(v).to_string(),
                };
                self.err(
                    path,
                    format!("expected a duration such as \"30m\", found {found}"),
                );
                return None;
            }
        };
        Duration::parse(&text).map_err(|e| self.err(path, e)).ok()
    }

    fn profile(&mut self, root: &Map<String, Value>, version_text: Option<String>) -> Profile {
        self.check_keys(root, "", TOP_KEYS);
        // The older system compared the kind without regard to case.
        if let Some(kind) = self.req_str(root, "", "kind")
            && !kind.eq_ignore_ascii_case("Profile")
        {
            self.err(
                "kind",
                format!("must be \"Profile\" (in any case), found {kind:?}"),
            );
        }
        self.constant(root, "", "apiVersion", "v1alpha1");

        let name = self
            .req_str(root, "", "name")
            .unwrap_or_default()
            .to_string();
        if !name.is_empty() || root.contains_key("name") {
            self.check_profile_name(&name, root.get("name"));
        }
        let version = self.version(root, version_text);
        let timeout = self.opt_duration(root, "", "timeout");

        let templating = match root.get("templating") {
            None => Templating::Jinja,
            Some(Value::String(s)) if s == "jinja" => Templating::Jinja,
            Some(Value::String(s)) if s == "django" => Templating::Django,
            Some(other) => {
                self.err(
                    "templating",
                    format!(
                        "must be \"jinja\" (the default) or \"django\" (the older system's templates), found {}",
                        match other {
                            Value::String(s) => format!("{s:?}"),
                            v => type_name(v).to_string(),
                        }
                    ),
                );
                Templating::Jinja
            }
        };
        let templates = self.templates(root.get("templates"));
        // Template compile errors are reported after the workflow's, in document order.
        let before = self.errors.len();
        let (checker, failures) = Checker::new(&templates, templating);
        for (tname, msg) in failures {
            self.err(format!("templates.{tname}.contents"), msg);
        }
        for tname in templates.keys() {
            for msg in checker.check_named(tname) {
                self.err(format!("templates.{tname}.contents"), msg);
            }
        }
        let template_errors = self.errors.split_off(before);

        let workflow = match root.get("workflow") {
            None => {
                self.err("workflow", "missing field");
                Workflow::default()
            }
            Some(Value::Object(map)) => self.workflow(map, &templates, &checker),
            Some(other) => {
                self.err(
                    "workflow",
                    format!("expected a mapping of steps, found {}", type_name(other)),
                );
                Workflow::default()
            }
        };
        self.errors.extend(template_errors);

        Profile {
            name,
            version,
            timeout,
            workflow,
            templates,
            templating,
        }
    }

    fn check_profile_name(&mut self, name: &str, present: Option<&Value>) {
        if !matches!(present, Some(Value::String(_))) {
            return; // type error already reported
        }
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if name.is_empty() || name.len() > 64 || !first_ok || !name.chars().all(is_name_char) {
            self.err(
                "name",
                format!(
                    "invalid name {name:?} (1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
                ),
            );
        }
    }

    fn version(&mut self, root: &Map<String, Value>, text: Option<String>) -> String {
        let version = match root.get("version") {
            None => {
                self.err("version", "missing field");
                return String::new();
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => text.unwrap_or_else(|| n.to_string()),
            Some(other) => {
                self.err(
                    "version",
                    format!("expected a version string, found {}", type_name(other)),
                );
                return String::new();
            }
        };
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-');
        if version.is_empty() || version.len() > 64 || !version.chars().all(ok_char) {
            self.err(
                "version",
                format!("invalid version {version:?} (1 to 64 characters of A-Z a-z 0-9 . _ + -)"),
            );
        }
        version
    }

    fn templates(&mut self, value: Option<&Value>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let map = match value {
            None | Some(Value::Null) => return out,
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.err(
                    "templates",
                    format!(
                        "expected a mapping of templates, found {}",
                        type_name(other)
                    ),
                );
                return out;
            }
        };
        for (name, def) in map {
            let path = format!("templates.{name}");
            if name.is_empty() || name.len() > 128 || !name.chars().all(is_name_char) {
                self.err(
                    &path,
                    "invalid template name (1 to 128 characters of A-Z a-z 0-9 . _ -)",
                );
            }
            let Value::Object(def) = def else {
                self.err(
                    &path,
                    format!(
                        "expected a mapping {{type: template, contents: ...}}, found {}",
                        type_name(def)
                    ),
                );
                continue;
            };
            self.check_keys(def, &path, TEMPLATE_KEYS);
            self.constant(def, &path, "type", "template");
            if let Some(contents) = self.req_str(def, &path, "contents") {
                out.insert(name.clone(), contents.to_string());
            }
        }
        out
    }

    fn workflow(
        &mut self,
        map: &Map<String, Value>,
        templates: &BTreeMap<String, String>,
        checker: &Checker<'_>,
    ) -> Workflow {
        let mut wf = Workflow::default();
        for key in map.keys() {
            if key.parse::<StepName>().is_err() {
                let names: Vec<&str> = StepName::ALL.iter().map(|n| n.as_str()).collect();
                self.err(
                    format!("workflow.{key}"),
                    format!("unknown step (expected one of: {})", names.join(", ")),
                );
            }
        }
        for step in StepName::ALL {
            let path = format!("workflow.{step}");
            // A step left out is an empty one: the older system skipped it.
            if let Some(v) = map.get(step.as_str()) {
                *wf.step_mut(step) = self.step(v, &path, templates, checker);
            }
        }
        wf
    }

    pub(super) fn step(
        &mut self,
        value: &Value,
        path: &str,
        templates: &BTreeMap<String, String>,
        checker: &Checker<'_>,
    ) -> Step {
        let mut step = Step::default();
        let (items, items_path) = match value {
            Value::Array(items) => (items.as_slice(), path.to_string()),
            Value::Object(map) => {
                self.check_keys(map, path, STEP_KEYS);
                step.timeout = self.opt_duration(map, path, "timeout");
                let apath = join(path, "actions");
                match map.get("actions") {
                    None | Some(Value::Null) => (&[][..], apath),
                    Some(Value::Array(items)) => (items.as_slice(), apath),
                    Some(other) => {
                        self.err(
                            apath,
                            format!("expected a list of actions, found {}", type_name(other)),
                        );
                        return step;
                    }
                }
            }
            other => {
                self.err(
                    path,
                    format!(
                        "expected a list of actions, {{}} or {{timeout: ..., actions: [...]}}, found {}",
                        type_name(other)
                    ),
                );
                return step;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{items_path}[{i}]");
            if let Some(action) = self.action(item, &ipath, templates, checker) {
                step.actions.push(action);
            }
        }
        step
    }
}
