//! The `native` driver: RMCP+ (IPMI v2.0 lanplus) through ipmi-rs, which
//! negotiates cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128).
//! ipmi-rs is blocking: each operation runs on the blocking pool, inside
//! `catch_unwind`, bounded by the attempt's time limit. After the session
//! opens its privilege is raised to ADMINISTRATOR (chassis control at USER
//! is refused with 0xD4). Sessions are reused for a while (`REUSE_FOR`), so
//! that a BMC with four session slots is not filled with idle ones.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipmi_rs::connection::{IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress};
use ipmi_rs::rmcp::{
    ActivationError, RakpMessage2ErrorStatusCode, RakpMessage2ParseError, Rmcp, RmcpIpmiError,
    RmcpIpmiReceiveError, V2_0ActivationError,
};

use super::{BmcLogin, BootRequest, PowerAction, PowerDriver, PowerError, PowerState};
use bootloader_core::power::ipmi::{self, RawRequest};

/// IPMI 2.0 limits: user names up to 16 bytes, passwords up to 20.
const MAX_USERNAME: usize = 16;
const MAX_PASSWORD: usize = 20;

pub struct NativeDriver {
    /// The whole operation, session included.
    timeout: Duration,
    /// Open sessions by BMC and login, reused while fresh.
    sessions: Arc<Mutex<HashMap<String, Cached>>>,
}

/// ipmi-rs does not expose the session id, so a session cannot be closed
/// (Close Session by handle is not universally supported: ipmi_sim answers
/// 0x87). Instead each session is kept and reused for the BMC's next
/// command while it is younger than this, well inside the 60 s inactivity
/// timeout IPMI BMCs default to; an older one is dropped and left to that
/// timeout. A burst of commands to one BMC uses one session slot, not one
/// per command.
const REUSE_FOR: Duration = Duration::from_secs(20);

struct Cached {
    rmcp: Rmcp,
    used: Instant,
}

impl NativeDriver {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn take_session(&self, key: &str) -> Option<Rmcp> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| c.used.elapsed() < REUSE_FOR);
        map.remove(key).map(|c| c.rmcp)
    }

    /// Runs `work` in a session with ADMINISTRATOR privilege: a fresh
    /// cached one if it still answers, else a new one.
    async fn session<T, F>(&self, bmc: &BmcLogin, work: F) -> Result<T, PowerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Rmcp) -> Result<T, PowerError> + Send + 'static,
    {
        check_login(bmc)?;
        let key = session_key(bmc);
        let cached = self.take_session(&key);
        let bmc = bmc.clone();
        // Several reads make one operation; each gets a share of the limit.
        let read_timeout = (self.timeout / 4).max(Duration::from_millis(250));
        let total = self.timeout;
        let sessions = Arc::clone(&self.sessions);
        let task = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                // A session the BMC dropped (it restarted, or timed the
                // session out early) does not answer: open another.
                let alive = cached
                    .and_then(|mut r| raw(&mut r, &ipmi::get_session_info()).is_ok().then_some(r));
                let mut rmcp = match alive {
                    Some(r) => r,
                    None => open(&bmc, read_timeout)?,
                };
                let result = work(&mut rmcp);
                // A session that failed on its way is not trusted again.
                if matches!(result, Ok(_) | Err(PowerError::Refused { .. })) {
                    let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
                    map.insert(
                        key,
                        Cached {
                            rmcp,
                            used: Instant::now(),
                        },
                    );
                }
                result
            }))
            .unwrap_or_else(|_| {
                Err(PowerError::Protocol(
                    "the IPMI library failed (panicked); nothing was sent after that".into(),
                ))
            })
        });
        match tokio::time::timeout(total, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(PowerError::Protocol(format!("IPMI task failed: {join}"))),
            Err(_) => Err(PowerError::Timeout(format!(
                "no complete answer within {} s",
                total.as_secs_f32()
            ))),
        }
    }
}

/// BMC address and login; a changed password opens a new session.
fn session_key(bmc: &BmcLogin) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bmc.password.expose().as_bytes());
    format!(
        "{}@{}:{}#{}",
        bmc.username,
        bmc.host,
        bmc.port,
        hex::encode(&digest[..8])
    )
}

fn check_login(bmc: &BmcLogin) -> Result<(), PowerError> {
    // ipmi-rs would silently log in with an empty name when it is too long.
    if bmc.username.len() > MAX_USERNAME || !bmc.username.is_ascii() {
        return Err(PowerError::Unsupported(format!(
            "IPMI user names are at most {MAX_USERNAME} ASCII characters"
        )));
    }
    if bmc.password.expose().len() > MAX_PASSWORD {
        return Err(PowerError::Unsupported(format!(
            "the native driver takes passwords of at most {MAX_PASSWORD} bytes; use the ipmitool driver"
        )));
    }
    Ok(())
}

/// Opens an RMCP+ session and raises it to ADMINISTRATOR.
fn open(bmc: &BmcLogin, read_timeout: Duration) -> Result<Rmcp, PowerError> {
    let mut rmcp = Rmcp::new((bmc.host.as_str(), bmc.port), read_timeout)
        .map_err(|e| PowerError::Unreachable(format!("{}:{}: {e}", bmc.host, bmc.port)))?;
    rmcp.activate(
        true,
        Some(&bmc.username),
        Some(bmc.password.expose().as_bytes()),
    )
    .map_err(activation_error)?;
    raw(&mut rmcp, &ipmi::set_privilege_admin())?;
    Ok(rmcp)
}

/// Sends one request; a non-zero completion code is a refusal.
fn raw(rmcp: &mut Rmcp, req: &RawRequest) -> Result<Vec<u8>, PowerError> {
    let message = Message::new_raw(req.netfn, req.cmd, req.data.clone());
    let mut request = Request::new(message, RequestTargetAddress::Bmc(LogicalUnit::Zero));
    let response = rmcp.send_recv(&mut request).map_err(|e| match e {
        RmcpIpmiError::Receive(RmcpIpmiReceiveError::Io(io)) => io_error(req.what, &io),
        other => PowerError::Protocol(format!("{}: {other:?}", req.what)),
    })?;
    if response.cmd() != req.cmd {
        return Err(PowerError::Protocol(format!(
            "{}: the answer is to command {:#04x}",
            req.what,
            response.cmd()
        )));
    }
    match response.cc() {
        0 => Ok(response.data().to_vec()),
        code => Err(ipmi::refused(req, code)),
    }
}

fn io_error(what: &str, e: &std::io::Error) -> PowerError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            PowerError::Timeout(format!("{what}: no answer from the BMC"))
        }
        _ => PowerError::Unreachable(format!("{what}: {e}")),
    }
}

fn activation_error(e: ActivationError) -> PowerError {
    use V2_0ActivationError as V2;
    match e {
        ActivationError::BindSocket(io) | ActivationError::PingSend(io) => {
            PowerError::Unreachable(format!("session: {io}"))
        }
        ActivationError::PongReceive(io) => io_error("RMCP ping", &io),
        ActivationError::IpmiNotSupported | ActivationError::NoSupportedIpmiLANVersions => {
            PowerError::Unsupported("the host does not speak IPMI over LAN".into())
        }
        ActivationError::V2_0(V2::ServerAuthenticationFailed)
        | ActivationError::V2_0(V2::RakpMessage4InvalidIntegrityCheckValue) => {
            PowerError::Auth(
                "the BMC rejected the login (a wrong password, or a user that may not take the ADMINISTRATOR role)"
                    .into(),
            )
        }
        ActivationError::V2_0(V2::RakpMessage2Parse(RakpMessage2ParseError::ErrorStatusCode(
            code,
        ))) => match code {
            RakpMessage2ErrorStatusCode::UnauthorizedName => {
                PowerError::Auth("the BMC does not know this user name".into())
            }
            other => PowerError::Auth(format!("the BMC refused the session: {other:?}")),
        },
        ActivationError::V2_0(
            V2::OpenSessionResponseReceive(RmcpIpmiReceiveError::Io(io))
            | V2::RakpMessage2Receive(RmcpIpmiReceiveError::Io(io))
            | V2::RakpMessage4Receive(RmcpIpmiReceiveError::Io(io)),
        ) => io_error("session", &io),
        ActivationError::V2_0(V2::Io(io)) => io_error("session", &io),
        other => PowerError::Protocol(format!("session: {other:?}")),
    }
}

#[async_trait]
impl PowerDriver for NativeDriver {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn status(&self, bmc: &BmcLogin) -> Result<PowerState, PowerError> {
        self.session(bmc, |rmcp| {
            let data = raw(rmcp, &ipmi::chassis_status())?;
            ipmi::parse_chassis_status(&data)
        })
        .await
    }

    async fn power(&self, bmc: &BmcLogin, action: PowerAction) -> Result<(), PowerError> {
        self.session(bmc, move |rmcp| {
            raw(rmcp, &ipmi::chassis_control(action)).map(drop)
        })
        .await
    }

    async fn set_boot_device(&self, bmc: &BmcLogin, req: BootRequest) -> Result<(), PowerError> {
        self.session(bmc, move |rmcp| {
            raw(rmcp, &ipmi::set_boot_flags(req)).map(drop)
        })
        .await
    }

    async fn boot_device(&self, bmc: &BmcLogin) -> Result<ipmi::BootFlags, PowerError> {
        self.session(bmc, |rmcp| {
            let data = raw(rmcp, &ipmi::get_boot_flags())?;
            ipmi::parse_boot_flags(&data)
        })
        .await
    }
}
