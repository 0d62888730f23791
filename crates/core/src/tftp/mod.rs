//! TFTP's pure cores (RFC 1350, options 2347/2348/2349, windowsize 7440),
//! read-only: `packet.rs` is the codec, `transfer.rs` one read transfer as
//! a sans-IO state machine and `path.rs` the root confinement. The
//! daemon's `tftp/server.rs` owns the sockets and files.

pub mod packet;
pub mod path;
pub mod transfer;
