//! Error types: validation errors (with YAML paths) and render errors.

use std::fmt;

/// Path used for errors that concern the document as a whole (YAML syntax,
/// size limits, multiple documents).
pub const DOCUMENT_PATH: &str = "(document)";

/// One validation problem, located by its YAML path
/// (e.g. `workflow.preparing[2].source.url`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ProfileError {
    /// Dotted YAML path with `[index]` for list items; `(document)` for the whole input.
    pub path: String,
    /// Human-readable description of the problem.
    pub message: String,
}

impl ProfileError {
    /// Builds an error from a path and a message.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// All validation problems found in a profile (never empty when returned by `parse`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl ProfileErrors {
    /// Wraps a single error.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ProfileError::new(path, message)])
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ProfileError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileErrors {}

impl<'a> IntoIterator for &'a ProfileErrors {
    type Item = &'a ProfileError;
    type IntoIter = std::slice::Iter<'a, ProfileError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Failure to render a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `render_template` was asked for a name not in the profile's `templates`.
    #[error("template {0:?} is not defined in this profile")]
    UnknownTemplate(String),
    /// The template source does not compile.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The template used a variable (or attribute) missing from the context.
    #[error("undefined value: {0}")]
    Undefined(String),
    /// The render exceeded its work/memory budget (e.g. runaway loops).
    #[error("rendering stopped: the template used up its fuel (too much work or output)")]
    OutOfFuel,
    /// Any other template runtime error.
    #[error("render failed: {0}")]
    Failed(String),
}
