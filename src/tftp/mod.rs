//! TFTP (RFC 1350, options 2347/2348/2349, windowsize 7440), read-only.
//! The codec, the sans-IO transfer and the root confinement are in
//! `bootloader_core::tftp`; `server.rs` owns the listening socket,
//! `transfer.rs` a transfer's file and loop, `wire.rs` its socket.

mod root_files;
pub mod server;
mod transfer;
mod wire;
