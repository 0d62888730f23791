//! Deployment profiles: YAML documents describing the workflow that provisions a
//! machine (serve files, drive IPMI, wait for callbacks), plus the templates the
//! workflow serves.
//!
//! [`parse`] loads and fully validates a profile, reporting every problem at once
//! with its YAML path. [`render_template`] and [`render_str`] render the profile's
//! templates (and templated filenames/messages) against a deployment context.

mod actions;
pub mod django;
mod duration;
mod error;
mod lines;
mod parse;
mod template;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use actions::MAX_RETRIES;
pub use duration::{Duration, MAX_DURATION_SECS};
pub use error::{DOCUMENT_PATH, ProfileError, ProfileErrors, RenderError};
pub use lines::line_of;
pub use template::{CONTEXT_VARIABLES, RENDER_FUEL, render_str, render_template};
pub use wire::MAX_INPUT_BYTES;

use crate::model::Via;
use crate::power::{BootDevice, PowerAction};

/// Parses and validates a profile document, returning every problem found.
/// This reads profiles already stored; a new one goes through
/// [`parse_upload`].
pub fn parse(yaml: &str) -> Result<Profile, ProfileErrors> {
    parse::parse_profile(yaml, false)
}

/// As [`parse`], and also refuses what no power driver can carry out
/// (queries such as `ipmi_command health`), naming the action's path: what an upload and
/// `profile validate` check.
pub fn parse_upload(yaml: &str) -> Result<Profile, ProfileErrors> {
    parse::parse_profile(yaml, true)
}

/// A validated profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    /// Profile name (`[A-Za-z0-9._-]`, starting alphanumeric, at most 64 chars).
    pub name: String,
    /// Version exactly as written (`0.1`, `1.0`, `0.1-a`; numbers are not re-formatted).
    pub version: String,
    /// Default timeout for steps that set none.
    pub timeout: Option<Duration>,
    /// The deployment workflow.
    pub workflow: Workflow,
    /// Template name -> template source.
    pub templates: BTreeMap<String, String>,
    /// The language of its templates, filenames and messages.
    pub templating: Templating,
}

/// The template language of a profile (`templating:`): the daemon's own
/// (minijinja: strict, nothing escaped), or the older system's Django
/// templates rendered as Django rendered them (`django/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Templating {
    #[default]
    Jinja,
    Django,
}

impl Profile {
    /// Renders the template `name` in the profile's language, `now` being
    /// the moment a Django `{% now %}` shows.
    pub fn render(
        &self,
        name: &str,
        ctx: &serde_json::Value,
        now: time::OffsetDateTime,
    ) -> Result<String, RenderError> {
        match self.templating {
            Templating::Jinja => render_template(self, name, ctx),
            Templating::Django => {
                let source = self
                    .templates
                    .get(name)
                    .ok_or_else(|| RenderError::UnknownTemplate(name.to_string()))?;
                template::render_django(source, ctx, now)
            }
        }
    }

    /// Renders one of the profile's inline templates (a `filename`, an
    /// echo `message`) in its language.
    pub fn render_inline(
        &self,
        source: &str,
        ctx: &serde_json::Value,
        now: time::OffsetDateTime,
    ) -> Result<String, RenderError> {
        match self.templating {
            Templating::Jinja => render_str(source, ctx),
            Templating::Django => template::render_django(source, ctx, now),
        }
    }
}

impl Profile {
    /// Number of actions in the six main steps (`new` .. `complete`).
    pub fn action_count(&self) -> usize {
        self.workflow.steps().map(|(_, s)| s.actions.len()).sum()
    }

    /// Names of all `expect_callback` actions, in workflow order (all eight steps).
    pub fn callback_names(&self) -> Vec<&str> {
        StepName::ALL
            .iter()
            .flat_map(|&n| self.workflow.step(n).actions.iter())
            .filter_map(|a| match &a.kind {
                ActionKind::ExpectCallback { name } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Names of the `expect_callback` actions a deployment standing in
    /// step `current` (none yet: before its first step) may still reach:
    /// that step's, the later ones', `error`'s and `cleanup`'s.
    pub fn callbacks_from(&self, current: Option<StepName>) -> Vec<&str> {
        StepName::ALL
            .iter()
            .skip_while(|&&n| current.is_some_and(|c| c != n))
            .flat_map(|&n| self.workflow.step(n).actions.iter())
            .filter_map(|a| match &a.kind {
                ActionKind::ExpectCallback { name } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Effective timeout of a step: the step's own, else the profile default.
    pub fn step_timeout(&self, step: StepName) -> Option<&Duration> {
        self.workflow
            .step(step)
            .timeout
            .as_ref()
            .or(self.timeout.as_ref())
    }
}

/// The name of a workflow step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// Deployment created.
    New,
    /// Files are served, machine is switched to network boot and power-cycled.
    Preparing,
    /// The OS installer runs.
    Installing,
    /// The installer configures the system.
    Configuring,
    /// First boot of the installed system.
    Postconfiguring,
    /// Deployment finished.
    Complete,
    /// Run when the deployment fails (optional).
    Error,
    /// Run when the deployment is removed (optional).
    Cleanup,
}

impl StepName {
    /// The six main steps in the order they are walked.
    pub const ORDER: [StepName; 6] = [
        StepName::New,
        StepName::Preparing,
        StepName::Installing,
        StepName::Configuring,
        StepName::Postconfiguring,
        StepName::Complete,
    ];

    /// All eight steps: the main ones, then `error` and `cleanup`.
    pub const ALL: [StepName; 8] = [
        StepName::New,
        StepName::Preparing,
        StepName::Installing,
        StepName::Configuring,
        StepName::Postconfiguring,
        StepName::Complete,
        StepName::Error,
        StepName::Cleanup,
    ];

    /// The step's key in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::New => "new",
            StepName::Preparing => "preparing",
            StepName::Installing => "installing",
            StepName::Configuring => "configuring",
            StepName::Postconfiguring => "postconfiguring",
            StepName::Complete => "complete",
            StepName::Error => "error",
            StepName::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepName::ALL
            .iter()
            .copied()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown step {s:?}"))
    }
}

/// The steps of a profile. Optional steps that were absent are empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Workflow {
    /// `new` step.
    pub new: Step,
    /// `preparing` step.
    pub preparing: Step,
    /// `installing` step.
    pub installing: Step,
    /// `configuring` step.
    pub configuring: Step,
    /// `postconfiguring` step.
    pub postconfiguring: Step,
    /// `complete` step.
    pub complete: Step,
    /// `error` step (empty when absent).
    pub error: Step,
    /// `cleanup` step (empty when absent).
    pub cleanup: Step,
}

impl Workflow {
    /// The step with the given name.
    pub fn step(&self, name: StepName) -> &Step {
        match name {
            StepName::New => &self.new,
            StepName::Preparing => &self.preparing,
            StepName::Installing => &self.installing,
            StepName::Configuring => &self.configuring,
            StepName::Postconfiguring => &self.postconfiguring,
            StepName::Complete => &self.complete,
            StepName::Error => &self.error,
            StepName::Cleanup => &self.cleanup,
        }
    }

    pub(crate) fn step_mut(&mut self, name: StepName) -> &mut Step {
        match name {
            StepName::New => &mut self.new,
            StepName::Preparing => &mut self.preparing,
            StepName::Installing => &mut self.installing,
            StepName::Configuring => &mut self.configuring,
            StepName::Postconfiguring => &mut self.postconfiguring,
            StepName::Complete => &mut self.complete,
            StepName::Error => &mut self.error,
            StepName::Cleanup => &mut self.cleanup,
        }
    }

    /// The six main steps in walk order ([`StepName::ORDER`]).
    pub fn steps(&self) -> impl Iterator<Item = (StepName, &Step)> + '_ {
        StepName::ORDER.iter().map(move |&n| (n, self.step(n)))
    }
}

/// One workflow step: its actions, run in order, and an optional timeout.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Step {
    /// Step timeout (mapping form `{timeout: 45m, actions: [...]}` only).
    pub timeout: Option<Duration>,
    /// Actions in order; empty for `{}` / `[]`.
    pub actions: Vec<Action>,
}

/// One action with its common options.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Action {
    /// What to do (serialized flattened, tagged by `action`).
    #[serde(flatten)]
    pub kind: ActionKind,
    /// Per-action timeout.
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure (0..=10; only serve_file with a url source
    /// and ipmi_command may set it).
    pub retries: u32,
}

/// The kinds of action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Make a file available to the machine under `filename` (a template).
    ServeFile {
        /// Protocol the file is served on.
        via: Via,
        /// Served file name (template source).
        filename: String,
        /// Where the contents come from.
        source: FileSource,
    },
    /// Stop serving a file.
    DeleteFile {
        /// Protocol the file was served on.
        on: Via,
        /// File name (template source).
        filename: String,
    },
    /// Wait until the machine calls `{{ callback_base }}<name>`.
    ExpectCallback {
        /// Callback name, unique within the profile.
        name: String,
    },
    /// Send an IPMI command to the machine's BMC.
    IpmiCommand(IpmiCommand),
    /// Log a message (template source).
    Echo {
        /// Message (template source).
        message: String,
    },
}

impl ActionKind {
    /// The YAML name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::ServeFile { .. } => "serve_file",
            ActionKind::DeleteFile { .. } => "delete_file",
            ActionKind::ExpectCallback { .. } => "expect_callback",
            ActionKind::IpmiCommand(_) => "ipmi_command",
            ActionKind::Echo { .. } => "echo",
        }
    }
}

/// Where a served file's contents come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileSource {
    /// Downloaded from an http(s) URL, optionally checked against a SHA-256.
    Url {
        /// `http://` or `https://` URL.
        url: String,
        /// Expected SHA-256, 64 lowercase hex digits.
        sha256: Option<String>,
    },
    /// Rendered from one of the profile's templates.
    Template {
        /// Key in the profile's `templates`.
        name: String,
    },
}

/// An IPMI command with its parameter, in the power vocabulary the drivers
/// speak. Shown as the YAML says it: `{"command": "power", "parameters":
/// "cycle"}` (with `persistent` and `efi` when a boot device request sets
/// them). Every spelling the older agent accepted reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpmiCommand {
    /// `power on|off|cycle|reset|soft|diag` (`softoff` and `shutdown` are
    /// `soft`).
    Power(PowerAction),
    /// `power status`, or `power` alone: the BMC is asked, nothing changes.
    PowerStatus,
    /// `bootdev DEVICE`: for the next boot only unless `persistent`; EFI or
    /// legacy as `efi` says, or (not given) as the machine last PXE-booted.
    Bootdev {
        device: BootDevice,
        persistent: bool,
        efi: Option<bool>,
    },
    /// `bootdev` alone: the BMC's boot flags are read.
    BootdevStatus,
    /// A query the older agent only printed to its own log (`health`,
    /// `sensors`, ...): refused at upload ([`parse_upload`]); one stored
    /// before that still reads, and the action fails when it runs.
    Unsupported(&'static str),
}

impl IpmiCommand {
    /// The YAML's `command` and `parameters` (empty for a query).
    pub fn parts(self) -> (&'static str, &'static str) {
        match self {
            Self::Power(a) => ("power", a.as_str()),
            Self::PowerStatus => ("power", "status"),
            Self::Bootdev { device, .. } => ("bootdev", device.as_str()),
            Self::BootdevStatus => ("bootdev", ""),
            Self::Unsupported(command) => (command, ""),
        }
    }

    /// `power` parameters, every spelling the older agent took.
    pub const POWER: [(&'static str, IpmiCommand); 9] = [
        ("on", Self::Power(PowerAction::On)),
        ("off", Self::Power(PowerAction::Off)),
        ("cycle", Self::Power(PowerAction::Cycle)),
        ("reset", Self::Power(PowerAction::Reset)),
        ("soft", Self::Power(PowerAction::Soft)),
        ("softoff", Self::Power(PowerAction::Soft)),
        ("shutdown", Self::Power(PowerAction::Soft)),
        ("diag", Self::Power(PowerAction::Diag)),
        ("status", Self::PowerStatus),
    ];

    /// `bootdev` parameters, every spelling the older agent took, and the
    /// device each names.
    pub const BOOTDEV: [(&'static str, BootDevice); 15] = [
        ("pxe", BootDevice::Pxe),
        ("net", BootDevice::Pxe),
        ("network", BootDevice::Pxe),
        ("hd", BootDevice::Disk),
        ("disk", BootDevice::Disk),
        ("safe", BootDevice::Safe),
        ("cd", BootDevice::Cdrom),
        ("cdrom", BootDevice::Cdrom),
        ("optical", BootDevice::Cdrom),
        ("dvd", BootDevice::Cdrom),
        ("floppy", BootDevice::Floppy),
        ("default", BootDevice::Default),
        ("setup", BootDevice::Bios),
        ("bios", BootDevice::Bios),
        ("f1", BootDevice::Bios),
    ];

    /// Commands the older agent knew but only printed the answer of, and
    /// why a step does not run them.
    pub const UNSUPPORTED: [(&'static str, &'static str); 5] = [
        (
            "health",
            "the BMC's health is kept on the server's page and at GET /servers/{fqdn}/power/health",
        ),
        (
            "sensors",
            "sensor readings are not part of a deployment; read them with ipmitool sdr",
        ),
        (
            "inventory",
            "hardware inventory comes from the agent the machine runs, not from a step",
        ),
        (
            "leds",
            "LED states are not part of a deployment; read them with ipmitool",
        ),
        (
            "net",
            "the BMC's own network settings are not part of a deployment",
        ),
    ];
}

impl serde::Serialize for IpmiCommand {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (command, parameters) = self.parts();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("command", command)?;
        map.serialize_entry("parameters", &Some(parameters).filter(|p| !p.is_empty()))?;
        if let Self::Bootdev {
            persistent, efi, ..
        } = self
        {
            if *persistent {
                map.serialize_entry("persistent", &true)?;
            }
            if let Some(efi) = efi {
                map.serialize_entry("efi", efi)?;
            }
        }
        map.end()
    }
}
