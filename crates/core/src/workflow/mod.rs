//! The deployment state machine (states, cursor, legal transitions,
//! progress, timeouts) and the plan built on it (what to commit, what
//! effect to carry out next). The daemon's `workflow/` executes the plan.

pub mod machine;
pub mod plan;
