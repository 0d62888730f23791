//! The deployment state machine (states, cursor, legal transitions,
//! progress, timeouts). The daemon's `workflow/` runs it.

pub mod machine;
