//! DHCP's adapters. The pure cores (classify, decide, reply, quirks,
//! trust) are in `bootloader_core::dhcp`. `lease.rs` allocates addresses
//! through the store, and `server.rs` owns the sockets (ports 67 and 4011,
//! one per boot interface).

pub mod lease;
pub mod server;
