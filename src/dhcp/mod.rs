//! DHCP's adapters. The pure cores (classify, decide, reply, quirks,
//! trust) are in `bootloader_core::dhcp`. `lease.rs` allocates addresses
//! through the store (from the pool slices `slices.rs` holds when daemons
//! share a database; through the lease journal, `journal.rs`, when alone), `sockets.rs` binds the sockets (ports 67 and 4011,
//! one per boot interface) and `server.rs` serves them.

pub mod journal;
pub mod lease;
pub mod server;
pub mod slices;
pub mod sockets;
