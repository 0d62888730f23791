//! bootloader's core: what the daemon knows without touching the world.
//! Nothing here opens a socket or a file, reads the clock, awaits or talks
//! to a database; callers pass `now` and bytes in and get decisions out.
//! Adapters (the daemon in `src/`) and the store build on it; it imports
//! nothing of theirs (the compiler enforces it: this crate depends on
//! neither tokio nor sqlx nor axum).
//!
//! Layout:
//! - `model/`: the one vocabulary: newtypes parsed once (`MacAddr`, `Fqdn`,
//!   `Name`, tokens), deployment states, the boot path's `Via`, `Phase`,
//!   `Outcome`, `LeaseState`.
//! - `profile/`: profile YAML -> validated `Profile`; templates.
//! - `dhcp/`: classify, decide, reply, quirks, trust.
//! - `tftp/`: the codec, one read transfer (sans-IO), path confinement.
//! - `workflow/`: the deployment state machine and the plan built on it.
//! - `published/`: the objects as the REST API and the events publish
//!   them (schema 2).
//! - `power/`: power actions, states, boot devices, BMC errors; the IPMI
//!   messages as bytes.

pub mod dhcp;
pub mod model;
pub mod ndp;
pub mod power;
pub mod profile;
pub mod published;
pub mod pxelinux;
pub mod tftp;
pub mod workflow;
