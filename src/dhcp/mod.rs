//! DHCP. `classify.rs` reads a request and `decide.rs` chooses the boot
//! answer; both are pure. Replies, leases and sockets arrive with the rest
//! of the network boot issue.

pub mod classify;
pub mod decide;
pub mod reply;
