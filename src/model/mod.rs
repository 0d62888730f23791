//! Domain types shared by every layer. Each newtype is parsed once, at the
//! edge (API, CSV, config), and carries its invariant from then on.

mod mac;
mod names;
mod secret;
mod token;

pub use mac::{MacAddr, MacParseError};
pub use names::{Fqdn, Name, NameError};
pub use secret::Secret;
pub use token::{ApiTokenSecret, CallbackToken, TokenHash, TokenScope};
