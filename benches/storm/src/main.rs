//! bootstorm: a boot-storm simulator. N machines, each with its own MAC
//! (and, with `--bind-leased`, its own address), power on over a window and
//! do what a PXE ROM and then iPXE do: DHCP (relayed or broadcast), the
//! NBP over TFTP with the tsize probe and its abort, iPXE's DHCP, the
//! script (following `chain`), kernel and initrd over HTTP (the initrd in
//! Range requests), then the callbacks the kernel line names, as the
//! installed system would. It reports machines finished and lost and each
//! phase's p50/p99.
//!
//! Subcommands: `prepare` registers the machines and starts a deployment
//! for each on a bootloader daemon; `classic` writes the files the classic
//! stack (dnsmasq + nginx) serves for the same machines; `run` plays the
//! storm; `check` asks the daemon afterwards whether every deployment is
//! complete and every acknowledged lease is in its store.
//! `benches/storm/run.sh` drives the whole comparison in namespaces.

mod api;
mod dhcp;
mod http;
mod ipxe;
mod machine;
mod report;
mod tftp;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::machine::{DhcpPaths, Plan};

#[derive(Parser)]
#[command(about = "Boot-storm simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register the machines and start a deployment for each.
    Prepare(api::Prepare),
    /// After a run: deployments by state, and the run's leases in the store.
    Check(api::Check),
    /// Write the classic stack's boot scripts for the machines.
    Classic(Classic),
    /// Play the storm.
    Run(Run),
}

#[derive(clap::Args)]
struct Classic {
    /// Where nginx serves from: boot.ipxe and ipxe/<mac> go here.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    machines: u32,
    /// nginx's base URL, as the machines reach it.
    #[arg(long)]
    http: String,
}

#[derive(clap::Args)]
struct Run {
    #[arg(long)]
    machines: u32,
    /// Power-ons are spread evenly over this many seconds.
    #[arg(long, default_value_t = 20.0)]
    over: f64,
    /// Our relay agent's address (giaddr; bound on port 67).
    #[arg(long)]
    relay_agent: Option<Ipv4Addr>,
    /// The DHCP server relayed packets go to.
    #[arg(long)]
    dhcp_server: Option<Ipv4Addr>,
    /// The interface broadcast rounds go out on (bound on port 68).
    #[arg(long)]
    broadcast_iface: Option<String>,
    /// relayed, broadcast, or mixed (even machines relayed, odd broadcast).
    #[arg(long, default_value = "mixed")]
    dhcp: String,
    #[arg(long, default_value_t = 69)]
    tftp_port: u16,
    #[arg(long, default_value_t = 1456)]
    blksize: u16,
    /// The addresses the machines' TFTP and HTTP traffic comes from,
    /// `FIRST-LAST`: machine i uses the i-th, round robin. (One address per
    /// machine would need as many neighbour entries on the server, past
    /// the kernel's table size; a few dozen keep each address's ports and
    /// per-source limits at what a rack's worth of machines would use.)
    #[arg(long)]
    sources: String,
    /// A machine that has not finished after this many seconds is lost.
    #[arg(long, default_value_t = 180)]
    deadline: u64,
    /// Label for the report (the server under test).
    #[arg(long, default_value = "server")]
    label: String,
    /// Write the summary (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write each acknowledged lease (`mac ip`) here, for `check`.
    #[arg(long)]
    leases: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let result = match Cli::parse().command {
        Command::Prepare(p) => p.run().await,
        Command::Check(c) => c.run().await,
        Command::Classic(c) => classic(&c),
        Command::Run(r) => run(r).await,
    };
    if let Err(e) = result {
        eprintln!("bootstorm: {e}");
        std::process::exit(1);
    }
}

async fn run(r: Run) -> Result<(), String> {
    let paths = match r.dhcp.as_str() {
        "relayed" => DhcpPaths::Relayed,
        "broadcast" => DhcpPaths::Broadcast,
        "mixed" => DhcpPaths::Mixed,
        other => return Err(format!("--dhcp {other}: relayed, broadcast or mixed")),
    };
    let relay = match (paths, r.relay_agent, r.dhcp_server) {
        (DhcpPaths::Broadcast, _, _) => None,
        (_, Some(agent), Some(server)) => Some((agent, SocketAddr::from((server, 67)))),
        _ => return Err("relayed rounds need --relay-agent and --dhcp-server".into()),
    };
    let iface = match (paths, &r.broadcast_iface) {
        (DhcpPaths::Relayed, _) => None,
        (_, Some(i)) => Some(i.as_str()),
        _ => return Err("broadcast rounds need --broadcast-iface".into()),
    };
    let secs = Duration::from_secs;
    let plan = Arc::new(Plan {
        dhcp: dhcp::Dhcp::open(relay, iface)?,
        paths,
        // A PXE ROM waits 4, 8, 16 and 32 s; iPXE starts at 1 s and doubles.
        rom_waits: vec![secs(4), secs(8), secs(16), secs(32)],
        ipxe_waits: vec![secs(1), secs(2), secs(4), secs(8), secs(16)],
        tftp_port: r.tftp_port,
        blksize: r.blksize,
        tftp_wait: secs(2),
        tftp_tries: 6,
        http_timeout: secs(30),
        sources: addresses(&r.sources)?,
    });
    let start = Instant::now();
    let step = Duration::from_secs_f64(r.over / f64::from(r.machines.max(1)));
    let deadline = secs(r.deadline);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..r.machines {
        let plan = Arc::clone(&plan);
        let at = tokio::time::Instant::from_std(start) + step * i;
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            match tokio::time::timeout(deadline, machine::boot(&plan, i)).await {
                Ok(outcome) => outcome,
                Err(_) => machine::Outcome {
                    index: i,
                    took: Vec::new(),
                    failed: Some((0, format!("not finished after {} s", deadline.as_secs()))),
                    ip: None,
                    retransmits: 0,
                    naks: 0,
                },
            }
        });
    }
    let mut outcomes = Vec::with_capacity(r.machines as usize);
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.map_err(|e| format!("a machine's task failed: {e}"))?);
    }
    let wall = start.elapsed();
    outcomes.sort_by_key(|o| o.index);
    let summary = report::summarize(&outcomes, &r.label, Duration::from_secs_f64(r.over), wall);
    report::print(&summary);
    if let Some(path) = &r.report {
        std::fs::write(path, format!("{summary:#}\n"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &r.leases {
        let lines: String = outcomes
            .iter()
            .filter_map(|o| Some(format!("{} {}\n", machine::mac_text(o.index), o.ip?)))
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `A.B.C.D-A.B.C.E` (or one address): every address in between.
fn addresses(range: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = || format!("--sources {range}: FIRST-LAST IPv4 addresses");
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let first: Ipv4Addr = first.parse().map_err(|_| bad())?;
    let last: Ipv4Addr = last.parse().map_err(|_| bad())?;
    let all: Vec<Ipv4Addr> = (u32::from(first)..=u32::from(last))
        .map(Ipv4Addr::from)
        .collect();
    if all.is_empty() || all.len() > 65536 {
        return Err(bad());
    }
    Ok(all)
}

/// The classic stack's files: `boot.ipxe` chains to `ipxe/<mac>`, each the
/// script the daemon would render for that machine, with its callbacks
/// going to nginx.
fn classic(c: &Classic) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", c.dir.display());
    std::fs::create_dir_all(c.dir.join("ipxe")).map_err(io)?;
    let base = c.http.trim_end_matches('/');
    std::fs::write(
        c.dir.join("boot.ipxe"),
        format!("#!ipxe\nchain --replace --autofree {base}/ipxe/${{netX/mac}} || goto failed\n:failed\nexit 1\n"),
    )
    .map_err(io)?;
    for i in 0..c.machines {
        let mac = machine::mac_text(i);
        let script = format!(
            "#!ipxe\nkernel {base}/static/storm/vmlinuz initrd=initrd.img quiet \
             bootloader.callback={base}/_callback/{mac}/ bootloader.steps=booted,installed,configured\n\
             initrd {base}/static/storm/initrd.img\nboot\n"
        );
        std::fs::write(c.dir.join("ipxe").join(&mac), script).map_err(io)?;
    }
    Ok(())
}
