//! TFTP (RFC 1350, options 2347/2348/2349, windowsize 7440), read-only.
//! The codec, the sans-IO transfer and the root confinement are in
//! `bootloader_core::tftp`; `server.rs` owns the sockets and files.

mod root_files;
pub mod server;
