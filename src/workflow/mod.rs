//! Deployments walked through their profile's workflow.
//!
//! The state machine (states, cursor, legal transitions, progress,
//! timeouts) and the plan (what to commit, which effect comes next) are
//! `bootloader_core::workflow`; this module carries the plan out.
//!
//! - `engine/`: claims across daemons and one task per deployment with
//!   work left (`engine/mod.rs`); the driver of one deployment, which
//!   commits what the plan says and runs each action under its deadline,
//!   retries and cancel (`engine/drive.rs`, unit-tested on a paused clock
//!   in `engine/tests/`); the token-guarded exports (`engine/exports.rs`).
//! - `executor.rs`: the effects themselves (files served and unserved,
//!   downloads, BMC commands, callbacks read), one attempt per call.
//! - `templates.rs`: the server, addresses and networks a deployment's
//!   templates are rendered with; `context.rs` builds the context from
//!   them (pure); `resolve.rs` the DNS fallback for an interface without
//!   a reservation (answers kept a while, a few lookups at once).
//! - `download.rs`: the download cache of `serve_file` url sources.

pub mod context;
pub mod download;
pub mod engine;
pub mod executor;
pub mod resolve;
pub mod templates;

pub use engine::{Engine, EngineSettings};
