//! Router solicitations on the boot interfaces, answered with an empty
//! advertisement so that iPXE stops waiting for IPv6
//! (`bootloader_core::ndp` says why and when not). One raw ICMPv6 socket
//! per boot interface (SO_BINDTODEVICE, the all-routers group joined),
//! replies unicast to the machine that asked, hop limit 255, each served
//! by a thread of its own that wakes every second to see whether the
//! daemon is stopping (tokio has no raw sockets; a solicitation is a few
//! a boot). It is an optimisation: where it cannot bind (IPv6 off, no
//! CAP_NET_RAW) the daemon says so and serves without it.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};

use bootloader_core::ndp::{EMPTY_ADVERTISEMENT, Icmpv6, RaMode, RaPolicy, advertises_something};

/// ff02::2, where router solicitations go.
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::1, for an answer to a solicitation from the unspecified address.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// One boot interface's socket.
pub struct RaSocket {
    interface: String,
    index: u32,
    socket: Socket,
}

fn open(interface: &str) -> std::io::Result<RaSocket> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from)?;
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.join_multicast_v6(&ALL_ROUTERS, index)?;
    // RFC 4861: neighbour discovery is sent with hop limit 255, which the
    // receiver checks to know it came from the link.
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_hops_v6(255)?;
    socket.set_multicast_loop_v6(false)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(RaSocket {
        interface: interface.to_string(),
        index,
        socket,
    })
}

/// A socket per boot interface when `mode` is not off; an interface
/// where it cannot be opened is logged and left out.
pub fn bind(interfaces: &[String], mode: RaMode) -> Vec<RaSocket> {
    if mode == RaMode::Off {
        return Vec::new();
    }
    interfaces
        .iter()
        .filter_map(|name| match open(name) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    interface = %name,
                    error = %e,
                    "cannot answer IPv6 router solicitations here (needs IPv6 and CAP_NET_RAW); iPXE will wait for IPv6 on its own"
                );
                None
            }
        })
        .collect()
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Answers on one interface until `stop` is set (blocking; its own
/// thread).
fn serve_one(s: &RaSocket, mode: RaMode, stop: &AtomicBool) {
    let mut policy = RaPolicy::new(mode);
    let mut buf = [0u8; 1500];
    let fd = s.socket.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match nix::sys::socket::recvfrom::<SockaddrIn6>(fd, &mut buf) {
            Ok((len, Some(from))) => (len, from),
            Ok((_, None)) => continue,
            // The second's timeout, or a signal: look at `stop` again.
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(interface = %s.interface, error = %e, "router solicitations: receive failed; no longer answering here");
                return;
            }
        };
        let message = &buf[..len.min(buf.len())];
        let now = unix_now();
        match bootloader_core::ndp::classify(message) {
            Icmpv6::RouterAdvertisement if advertises_something(message) => {
                if policy.answers(now) && mode == RaMode::Auto {
                    tracing::info!(
                        interface = %s.interface,
                        router = %from.ip(),
                        "an IPv6 router advertises here: no longer answering router solicitations on this link"
                    );
                }
                policy.heard_router(now);
            }
            Icmpv6::RouterSolicitation if policy.answers(now) => {
                let to = if from.ip().is_unspecified() {
                    ALL_NODES
                } else {
                    from.ip()
                };
                let dest = SockaddrIn6::from(SocketAddrV6::new(to, 0, 0, s.index));
                match nix::sys::socket::sendto(fd, &EMPTY_ADVERTISEMENT, &dest, MsgFlags::empty()) {
                    Ok(_) => {
                        tracing::debug!(interface = %s.interface, to = %to, "answered a router solicitation")
                    }
                    Err(e) => {
                        tracing::debug!(interface = %s.interface, to = %to, error = %e, "router solicitation: reply failed")
                    }
                }
            }
            _ => {}
        }
    }
}

/// Serves every socket until `shutdown`, each on its own thread.
pub async fn serve(
    sockets: Vec<RaSocket>,
    mode: RaMode,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || serve_one(&s, mode, &stop))
        })
        .collect();
    shutdown.await;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.await;
    }
}
