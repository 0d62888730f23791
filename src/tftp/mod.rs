//! TFTP (RFC 1350, options 2347/2348/2349, windowsize 7440). `packet.rs`
//! is the codec and `transfer.rs` one read transfer as a sans-IO state
//! machine; both are pure. The socket side that serves iPXE binaries and
//! deployment files arrives with the network boot issue.

pub mod packet;
pub mod transfer;
