//! Deployments walked through their profile's workflow.
//!
//! The state machine itself (states, cursor, legal transitions, progress,
//! timeouts) is `bootloader_core::workflow::machine`.
//!
//! - `context.rs`: the template context of a deployment. Pure.
//! - `download.rs`: the download cache of `serve_file` url sources.
//! - `engine.rs`: one task per deployment with work left: runs the action
//!   at the cursor under its deadline, commits the outcome, resumes after a
//!   restart.

pub mod context;
pub mod download;
pub mod engine;

pub use engine::{Engine, EngineSettings};
