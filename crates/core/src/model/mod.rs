//! Domain types shared by every layer. Each newtype is parsed once, at the
//! edge (API, CSV, config), and carries its invariant from then on.

mod boot;
mod deployment;
mod mac;
mod names;
pub mod older;
mod password;
mod secret;
mod theme;
mod token;

pub use boot::{LeaseState, Outcome, Phase, Via};
pub use deployment::{DeploymentState, LogLevel};
pub use mac::{MacAddr, MacParseError};
pub use names::{Fqdn, Name, NameError};
pub use password::{MIN_PASSWORD_CHARS, NewPassword, PasswordError, PasswordHash};
pub use secret::{Secret, redact_url};
pub use theme::Theme;
pub use token::{ApiTokenSecret, CallbackToken, SessionSecret, TokenHash, TokenScope};
