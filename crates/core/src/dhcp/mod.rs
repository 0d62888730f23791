//! DHCP's pure cores. `classify.rs` reads a request, `decide.rs` chooses
//! the boot answer, `leases.rs` picks addresses from what is known of a
//! network's leases, `reply.rs` builds the packet, `options.rs` reads and
//! encodes the options operators add to a network, `quirks.rs` applies the
//! firmware quirk rules and `trust.rs` says what a request may claim about
//! where it comes from. The daemon's `dhcp/` owns sockets and leases.

pub mod classify;
pub mod decide;
pub mod leases;
pub mod options;
pub mod quirks;
pub mod reply;
pub mod trust;
