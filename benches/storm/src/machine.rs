//! One machine's boot, from power-on to its last callback: what a PXE ROM,
//! then iPXE, then the installed system's callbacks do on the network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dhcp::{Asker, Dhcp, Path};
use crate::http::{Client, Request, Url};
use crate::ipxe::{self, Next};
use crate::tftp::Fetch;

/// The phases of a boot, in order; `PHASES[i]` names `Phase` value i.
pub const PHASES: [&str; 8] = [
    "dhcp (PXE ROM)",
    "tftp (tsize probe + NBP)",
    "dhcp (iPXE)",
    "script",
    "kernel",
    "initrd (Range)",
    "callbacks",
    "power-on to last callback",
];

/// What every machine shares.
pub struct Plan {
    pub dhcp: Arc<Dhcp>,
    pub paths: DhcpPaths,
    pub rom_waits: Vec<Duration>,
    pub ipxe_waits: Vec<Duration>,
    pub tftp_port: u16,
    pub blksize: u16,
    pub tftp_wait: Duration,
    pub tftp_tries: u32,
    pub http_timeout: Duration,
    /// Where machines' TFTP and HTTP traffic comes from, round robin.
    pub sources: Vec<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpPaths {
    Relayed,
    Broadcast,
    /// Even machines relayed, odd ones broadcast.
    Mixed,
}

pub struct Outcome {
    pub index: u32,
    /// Time spent in each phase reached (`PHASES` order).
    pub took: Vec<Duration>,
    /// The phase that failed, and why.
    pub failed: Option<(usize, String)>,
    pub ip: Option<Ipv4Addr>,
    pub retransmits: u32,
    pub naks: u32,
}

pub fn mac(index: u32) -> [u8; 6] {
    let [_, a, b, c] = index.to_be_bytes();
    [0x52, 0x54, 0x02, a, b, c]
}

pub fn mac_text(index: u32) -> String {
    let m = mac(index);
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

pub async fn boot(plan: &Plan, index: u32) -> Outcome {
    let mut out = Outcome {
        index,
        took: Vec::with_capacity(PHASES.len()),
        failed: None,
        ip: None,
        retransmits: 0,
        naks: 0,
    };
    let start = Instant::now();
    if let Err(why) = phases(plan, index, &mut out).await {
        out.failed = Some((out.took.len(), why));
    } else {
        out.took.push(start.elapsed());
    }
    out
}

async fn phases(plan: &Plan, index: u32, out: &mut Outcome) -> Result<(), String> {
    let path = match plan.paths {
        DhcpPaths::Relayed => Path::Relayed,
        DhcpPaths::Broadcast => Path::Broadcast,
        DhcpPaths::Mixed if index.is_multiple_of(2) => Path::Relayed,
        DhcpPaths::Mixed => Path::Broadcast,
    };
    let mac = mac(index);
    let xid = 0x5000_0000 ^ (index << 2);

    let mut clock = Instant::now();
    let mut lap = |out: &mut Outcome| {
        out.took.push(clock.elapsed());
        clock = Instant::now();
    };

    let rom = plan
        .dhcp
        .dora(mac, xid, Asker::PxeRom, path, &plan.rom_waits)
        .await?;
    out.ip = Some(rom.ip);
    out.retransmits += rom.retransmits;
    out.naks += rom.naks;
    if rom.file.is_empty() {
        return Err("the OFFER names no boot file".into());
    }
    let source = plan.sources[index as usize % plan.sources.len()];
    lap(out);

    let fetched = Fetch {
        from: source,
        server: SocketAddr::new(IpAddr::V4(rom.next_server), plan.tftp_port),
        file: &rom.file,
        blksize: plan.blksize,
        wait: plan.tftp_wait,
        tries: plan.tftp_tries,
    }
    .run()
    .await?;
    out.retransmits += fetched.retransmits;
    if fetched.bytes == 0 {
        return Err(format!("{}: empty", rom.file));
    }
    lap(out);

    let ipxe = plan
        .dhcp
        .dora(mac, xid | 1, Asker::Ipxe, path, &plan.ipxe_waits)
        .await?;
    out.retransmits += ipxe.retransmits;
    out.naks += ipxe.naks;
    if ipxe.ip != rom.ip {
        return Err(format!("iPXE got {} where the ROM got {}", ipxe.ip, rom.ip));
    }
    lap(out);

    let mut http = Client::new(IpAddr::V4(source), plan.http_timeout);
    let mac_text = mac_text(index);
    let mut url = ipxe.file.clone();
    let (kernel, args, initrds) = 'script: {
        for _ in 0..4 {
            let u = Url::parse(&url)?;
            let mut req = Request::get(&u);
            req.keep = 64 * 1024;
            let r = http.send(&req).await?;
            if r.status != 200 {
                return Err(format!("GET {}: status {}", u.path, r.status));
            }
            let text = String::from_utf8_lossy(&r.body);
            match ipxe::read(&text, &url, &mac_text).map_err(|e| format!("{url}: {e}"))? {
                Next::Chain(next) => url = next,
                Next::Boot {
                    kernel,
                    args,
                    initrds,
                } => break 'script (kernel, args, initrds),
                Next::Exit { said } => return Err(format!("{url}: exit ({said})")),
            }
        }
        return Err("more than 4 chained scripts".into());
    };
    lap(out);

    let u = Url::parse(&kernel)?;
    let r = http.send(&Request::get(&u)).await?;
    if r.status != 200 || r.len == 0 {
        return Err(format!(
            "GET {}: status {}, {} bytes",
            u.path, r.status, r.len
        ));
    }
    lap(out);

    for initrd in &initrds {
        ranged(&mut http, &Url::parse(initrd)?).await?;
    }
    lap(out);

    let base = ipxe::kernel_arg(&args, "bootloader.callback").unwrap_or("");
    let steps = ipxe::kernel_arg(&args, "bootloader.steps").unwrap_or("");
    for step in steps.split(',').filter(|s| !s.is_empty()) {
        // The installed system's `wget`: a connection of its own each time.
        let u = Url::parse(&format!("{base}{step}"))?;
        let r = Client::new(IpAddr::V4(source), plan.http_timeout)
            .send(&Request::get(&u))
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(format!("callback {step}: status {}", r.status));
        }
    }
    lap(out);
    Ok(())
}

/// Fetches a file in two ranges: its first 64 KiB, then the rest.
async fn ranged(http: &mut Client, u: &Url) -> Result<(), String> {
    const HEAD: u64 = 64 * 1024;
    let mut req = Request::get(u);
    req.range = Some((0, HEAD - 1));
    let r = http.send(&req).await?;
    if r.status != 206 {
        return Err(format!("GET {} with Range: status {}", u.path, r.status));
    }
    let total: u64 = r
        .content_range
        .as_deref()
        .and_then(|c| c.rsplit('/').next())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("GET {}: no Content-Range total", u.path))?;
    if total <= HEAD {
        return Ok(());
    }
    req.range = Some((HEAD, total - 1));
    let r = http.send(&req).await?;
    if r.status != 206 || r.len != total - HEAD {
        return Err(format!(
            "GET {} bytes {HEAD}-: status {}, {} bytes of {}",
            u.path,
            r.status,
            r.len,
            total - HEAD
        ));
    }
    Ok(())
}
