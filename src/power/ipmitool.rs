//! The `ipmitool` driver: `ipmitool -I lanplus` as a subprocess, for BMCs
//! that need cipher suite 17 (or another) or that ipmi-rs does not get
//! along with. It sends the same raw messages as the native driver. The
//! password goes through the environment (`-E`), never the command line;
//! each call is bounded by the attempt's time limit and killed after it;
//! the outcome is read from the output (`ipmitool_output.rs`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use super::{BmcLogin, BootRequest, PowerAction, PowerDriver, PowerError, PowerState};
use bootloader_core::power::ipmi::{self, RawRequest};
use bootloader_core::power::ipmitool_output::parse_raw;

pub struct IpmitoolDriver {
    program: PathBuf,
    cipher_suite: u8,
    timeout: Duration,
}

impl IpmitoolDriver {
    pub fn new(program: PathBuf, cipher_suite: u8, timeout: Duration) -> Self {
        Self {
            program,
            cipher_suite,
            timeout,
        }
    }

    fn command(&self, bmc: &BmcLogin, req: &RawRequest) -> Command {
        // ipmitool waits -N seconds per try, -R tries per request.
        let per_try = (self.timeout.as_secs() / 4).max(1);
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("LANG", "C")
            .env("IPMI_PASSWORD", bmc.password.expose())
            .args(["-v", "-I", "lanplus", "-H", &bmc.host])
            .args(["-p", &bmc.port.to_string()])
            .args(["-U", &bmc.username, "-E"])
            .args(["-C", &self.cipher_suite.to_string()])
            .args(["-L", "ADMINISTRATOR"])
            .args(["-N", &per_try.to_string(), "-R", "2"])
            .arg("raw")
            .arg(format!("{:#04x}", req.netfn))
            .arg(format!("{:#04x}", req.cmd))
            .args(req.data.iter().map(|b| format!("{b:#04x}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn raw(&self, bmc: &BmcLogin, req: &RawRequest) -> Result<Vec<u8>, PowerError> {
        let child = self.command(bmc, req).spawn().map_err(|e| {
            PowerError::Unsupported(format!(
                "cannot run {}: {e} (install ipmitool)",
                self.program.display()
            ))
        })?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(PowerError::Protocol(format!("ipmitool: {e}"))),
            // The child is killed when its future is dropped.
            Err(_) => {
                return Err(PowerError::Timeout(format!(
                    "{}: no complete answer within {} s",
                    req.what,
                    self.timeout.as_secs_f32()
                )));
            }
        };
        parse_raw(
            req.what,
            output.status.success(),
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        )
    }
}

#[async_trait]
impl PowerDriver for IpmitoolDriver {
    fn name(&self) -> &'static str {
        "ipmitool"
    }

    async fn status(&self, bmc: &BmcLogin) -> Result<PowerState, PowerError> {
        let data = self.raw(bmc, &ipmi::chassis_status()).await?;
        ipmi::parse_chassis_status(&data)
    }

    async fn power(&self, bmc: &BmcLogin, action: PowerAction) -> Result<(), PowerError> {
        self.raw(bmc, &ipmi::chassis_control(action))
            .await
            .map(drop)
    }

    async fn set_boot_device(&self, bmc: &BmcLogin, req: BootRequest) -> Result<(), PowerError> {
        self.raw(bmc, &ipmi::set_boot_flags(req)).await.map(drop)
    }

    async fn boot_device(&self, bmc: &BmcLogin) -> Result<ipmi::BootFlags, PowerError> {
        let data = self.raw(bmc, &ipmi::get_boot_flags()).await?;
        ipmi::parse_boot_flags(&data)
    }
}
