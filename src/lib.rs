//! bootloader: a bare-metal provisioning daemon.
//!
//! Layout (see ARCHITECTURE.md for the whole map):
//! - `config/`: the TOML file and environment, layered into a validated `Config`.
//! - `model/`: domain newtypes (MAC, FQDN, names, tokens).
//! - `profile/`: profile YAML -> validated `Profile`; template rendering.
//! - `power/`: BMC drivers (native IPMI, ipmitool) and the power service.
//! - `store/`: the `Store` trait; SQLite and PostgreSQL backends; encryption at rest.
//! - `http/`: the REST API (and, later, boot endpoints and callbacks).
//! - `app.rs`: start-up wiring shared by `serve` and the tests.

pub mod app;
pub mod config;
pub mod dhcp;
pub mod events;
pub mod files;
pub mod http;
pub mod power;
pub mod systemd;
pub mod telemetry;
pub mod tftp;
pub mod timeline;
pub mod workflow;
