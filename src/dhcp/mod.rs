//! DHCP. `classify.rs` reads a request, `decide.rs` chooses the boot
//! answer and `reply.rs` builds the packet; all three are pure.
//! `lease.rs` allocates addresses through the store, and `server.rs` owns
//! the sockets (ports 67 and 4011, one per boot interface).

pub mod classify;
pub mod decide;
pub mod lease;
pub mod quirks;
pub mod reply;
pub mod server;
pub mod trust;
