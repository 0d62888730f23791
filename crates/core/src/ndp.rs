//! Router solicitations on the boot network, answered so that iPXE stops
//! waiting for IPv6. iPXE configures a network device with every
//! configurator at once and waits for all of them: its IPv6 one sends
//! router solicitations and gives up only after its retry timer runs out
//! (seconds, on every boot), unless a router advertisement arrives; the
//! first one it gets ends that wait at once when it asks for neither
//! stateful nor stateless DHCPv6. So the daemon may answer with an
//! advertisement that says nothing: router lifetime 0 (not a default
//! router), no prefix, no flags, sent only to the machine that asked.
//! Where a real router advertises on the link, the daemon stays silent
//! (`RaPolicy`), so machines learn IPv6 from it as before.

/// ICMPv6 types.
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;

/// How long a foreign router advertisement keeps the daemon silent:
/// routers advertise at least every 1,800 s (RFC 4861's largest
/// `MaxRtrAdvInterval`), so one seen within twice that is still there.
pub const FOREIGN_ROUTER_MEMORY_SECS: i64 = 3_600;

/// What an ICMPv6 message received on a boot interface is, for this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6 {
    RouterSolicitation,
    RouterAdvertisement,
    Other,
}

/// Reads an ICMPv6 message (as a raw ICMPv6 socket delivers it: from the
/// ICMPv6 header on). Malformed ones are `Other`.
pub fn classify(message: &[u8]) -> Icmpv6 {
    match message {
        // Type, code 0, and the fixed part: 8 bytes for a solicitation,
        // 16 for an advertisement (RFC 4861 4.1, 4.2).
        [ROUTER_SOLICITATION, 0, ..] if message.len() >= 8 => Icmpv6::RouterSolicitation,
        [ROUTER_ADVERTISEMENT, 0, ..] if message.len() >= 16 => Icmpv6::RouterAdvertisement,
        _ => Icmpv6::Other,
    }
}

/// The advertisement the daemon sends: type 134, code 0, the checksum
/// left for the kernel to fill in, current hop limit unspecified, M and
/// O clear (no DHCPv6), router lifetime 0 (not a default router),
/// reachable time and retransmission timer unspecified, no options.
pub const EMPTY_ADVERTISEMENT: [u8; 16] = [
    ROUTER_ADVERTISEMENT,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// Whether an advertisement tells hosts anything (a default router, DHCPv6,
/// a prefix, DNS, routes...): one that does is a real router's; one like
/// the daemon's own (only a link-layer address or an MTU besides) is not.
pub fn advertises_something(ra: &[u8]) -> bool {
    if classify(ra) != Icmpv6::RouterAdvertisement {
        return false;
    }
    let lifetime = u16::from_be_bytes([ra[6], ra[7]]);
    if lifetime != 0 || ra[5] & 0xc0 != 0 {
        return true;
    }
    // Options: type, length in 8-byte units, data.
    let mut rest = &ra[16..];
    while let [kind, units, ..] = rest {
        let len = usize::from(*units) * 8;
        if len == 0 || rest.len() < len {
            return false;
        }
        if !matches!(kind, 1 | 5) {
            return true;
        }
        rest = &rest[len..];
    }
    false
}

/// Whether the daemon answers router solicitations (`dhcp.router_advertisements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaMode {
    /// Answer unless another router advertised on the link within the
    /// last hour.
    Auto,
    /// Always answer (a boot network known to have no IPv6 router).
    On,
    /// Never answer.
    Off,
}

impl std::str::FromStr for RaMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" | "true" => Ok(Self::On),
            "off" | "false" => Ok(Self::Off),
            other => Err(format!("{other:?} is not auto, on or off")),
        }
    }
}

/// The decision for one interface: its mode and when another router was
/// last heard there.
#[derive(Debug, Clone)]
pub struct RaPolicy {
    pub mode: RaMode,
    last_foreign: Option<i64>,
}

impl RaPolicy {
    pub fn new(mode: RaMode) -> Self {
        Self {
            mode,
            last_foreign: None,
        }
    }

    /// Another router's advertisement was heard at `now` (unix seconds).
    pub fn heard_router(&mut self, now: i64) {
        self.last_foreign = Some(now);
    }

    /// Whether to answer a solicitation at `now`.
    pub fn answers(&self, now: i64) -> bool {
        match self.mode {
            RaMode::Off => false,
            RaMode::On => true,
            RaMode::Auto => self
                .last_foreign
                .is_none_or(|t| now - t > FOREIGN_ROUTER_MEMORY_SECS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_by_their_fixed_part() {
        let rs = [133, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 1, 2, 3];
        assert_eq!(classify(&rs), Icmpv6::RouterSolicitation);
        assert_eq!(classify(&rs[..7]), Icmpv6::Other, "too short");
        assert_eq!(
            classify(&[133, 1, 0, 0, 0, 0, 0, 0]),
            Icmpv6::Other,
            "code 1"
        );
        assert_eq!(classify(&EMPTY_ADVERTISEMENT), Icmpv6::RouterAdvertisement);
        assert_eq!(classify(&EMPTY_ADVERTISEMENT[..12]), Icmpv6::Other);
        assert_eq!(classify(&[128, 0, 0, 0]), Icmpv6::Other, "echo request");
        assert_eq!(classify(&[]), Icmpv6::Other);
    }

    #[test]
    fn the_advertisement_asks_for_nothing() {
        let ra = EMPTY_ADVERTISEMENT;
        assert_eq!(ra[5] & 0xc0, 0, "neither managed nor other configuration");
        assert_eq!(
            u16::from_be_bytes([ra[6], ra[7]]),
            0,
            "not a default router"
        );
        assert_eq!(ra.len(), 16, "no options: no prefix");
    }

    #[test]
    fn a_real_router_is_told_from_an_empty_one() {
        assert!(!advertises_something(&EMPTY_ADVERTISEMENT));
        let mut with_lifetime = EMPTY_ADVERTISEMENT;
        with_lifetime[6..8].copy_from_slice(&1800u16.to_be_bytes());
        assert!(advertises_something(&with_lifetime));
        let mut managed = EMPTY_ADVERTISEMENT;
        managed[5] = 0x80;
        assert!(advertises_something(&managed));
        let mut slla = EMPTY_ADVERTISEMENT.to_vec();
        slla.extend([1, 1, 0x52, 0x54, 0, 1, 2, 3]);
        assert!(!advertises_something(&slla), "a link-layer address alone");
        let mut prefix = slla.clone();
        prefix.extend([3, 4]);
        prefix.extend([0; 30]);
        assert!(advertises_something(&prefix), "a prefix");
        let mut broken = slla;
        broken.extend([3, 0]);
        assert!(
            !advertises_something(&broken),
            "a zero-length option ends it"
        );
    }

    #[test]
    fn a_real_router_silences_auto() {
        let mut p = RaPolicy::new(RaMode::Auto);
        assert!(p.answers(1_000));
        p.heard_router(1_000);
        assert!(!p.answers(1_001));
        assert!(!p.answers(1_000 + FOREIGN_ROUTER_MEMORY_SECS));
        assert!(p.answers(1_001 + FOREIGN_ROUTER_MEMORY_SECS));
        let mut on = RaPolicy::new(RaMode::On);
        on.heard_router(5);
        assert!(on.answers(6));
        assert!(!RaPolicy::new(RaMode::Off).answers(0));
        assert_eq!("auto".parse(), Ok(RaMode::Auto));
        assert!("maybe".parse::<RaMode>().is_err());
    }
}
