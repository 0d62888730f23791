//! The IPMI messages power control sends, as bytes, and the meaning of what
//! comes back: chassis control, chassis status, system boot options, the
//! session privilege. Both drivers use these (the native one sends them
//! itself, the ipmitool one through `ipmitool raw`), so they ask the BMC
//! for exactly the same things. Pure.

use super::{BootDevice, BootRequest, PowerAction, PowerError, PowerState};

/// NetFn Chassis (requests).
pub const NETFN_CHASSIS: u8 = 0x00;
/// NetFn Application (requests).
pub const NETFN_APP: u8 = 0x06;

/// One IPMI request: what to send and what it is for (in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
    /// "chassis control", "set boot options", ... for messages.
    pub what: &'static str,
}

/// Set Session Privilege Level to ADMINISTRATOR. A session opens at USER;
/// chassis control at USER is refused with 0xD4.
pub fn set_privilege_admin() -> RawRequest {
    RawRequest {
        netfn: NETFN_APP,
        cmd: 0x3B,
        data: vec![0x04],
        what: "set session privilege",
    }
}

/// Get Session Info of the current session: a harmless request that shows
/// whether a session still answers.
pub fn get_session_info() -> RawRequest {
    RawRequest {
        netfn: NETFN_APP,
        cmd: 0x3D,
        data: vec![0x00],
        what: "get session info",
    }
}

/// Get Chassis Status.
pub fn chassis_status() -> RawRequest {
    RawRequest {
        netfn: NETFN_CHASSIS,
        cmd: 0x01,
        data: vec![],
        what: "chassis status",
    }
}

/// The power state in a Get Chassis Status answer: bit 0 of the first byte.
pub fn parse_chassis_status(data: &[u8]) -> Result<PowerState, PowerError> {
    match data.first() {
        Some(b) if b & 0x01 != 0 => Ok(PowerState::On),
        Some(_) => Ok(PowerState::Off),
        None => Err(PowerError::Protocol(
            "chassis status answer carries no data".into(),
        )),
    }
}

/// Chassis Control. `On` / `Cycle` / ... as IPMI numbers them.
pub fn chassis_control(action: PowerAction) -> RawRequest {
    let code = match action {
        PowerAction::Off => 0x00,
        PowerAction::On => 0x01,
        PowerAction::Cycle => 0x02,
        PowerAction::Reset => 0x03,
        PowerAction::Diag => 0x04,
        PowerAction::Soft => 0x05,
    };
    RawRequest {
        netfn: NETFN_CHASSIS,
        cmd: 0x02,
        data: vec![code],
        what: "chassis control",
    }
}

/// Set System Boot Options, parameter 5 (boot flags): valid, once or
/// persistent, legacy or EFI, and the device.
pub fn set_boot_flags(req: BootRequest) -> RawRequest {
    let mut flags = 0x80; // the flags are valid
    if req.persistent {
        flags |= 0x40;
    }
    if req.efi {
        flags |= 0x20;
    }
    let device = match req.device {
        BootDevice::Default => 0x00,
        BootDevice::Pxe => 0x01,
        BootDevice::Disk => 0x02,
        BootDevice::Safe => 0x03,
        BootDevice::Cdrom => 0x05,
        BootDevice::Bios => 0x06,
        BootDevice::Floppy => 0x0F,
    };
    RawRequest {
        netfn: NETFN_CHASSIS,
        cmd: 0x08,
        data: vec![0x05, flags, device << 2, 0x00, 0x00, 0x00],
        what: "set boot options",
    }
}

/// Get System Boot Options, parameter 5.
pub fn get_boot_flags() -> RawRequest {
    RawRequest {
        netfn: NETFN_CHASSIS,
        cmd: 0x09,
        data: vec![0x05, 0x00, 0x00],
        what: "get boot options",
    }
}

/// The boot flags a BMC holds (Get System Boot Options, parameter 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BootFlags {
    /// Whether the BMC will apply them. Many BMCs clear this after the one
    /// boot a non-persistent request was for; some never keep it.
    pub valid: bool,
    /// The device selector (`None`: no override).
    pub device: Option<BootDevice>,
    pub persistent: bool,
    pub efi: bool,
}

/// Reads a Get System Boot Options (parameter 5) answer.
pub fn parse_boot_flags(data: &[u8]) -> Result<BootFlags, PowerError> {
    // version, parameter (bit 7: invalid/locked), then the five flag bytes.
    let [_version, param, flags, dev, ..] = data else {
        return Err(PowerError::Protocol(format!(
            "boot options answer too short ({} bytes)",
            data.len()
        )));
    };
    if param & 0x7F != 0x05 {
        return Err(PowerError::Protocol(format!(
            "boot options answer is for parameter {}, not 5",
            param & 0x7F
        )));
    }
    let device = match (dev >> 2) & 0x0F {
        0x00 => None,
        0x01 => Some(BootDevice::Pxe),
        0x02 => Some(BootDevice::Disk),
        0x03 => Some(BootDevice::Safe),
        0x05 => Some(BootDevice::Cdrom),
        0x06 => Some(BootDevice::Bios),
        0x0F => Some(BootDevice::Floppy),
        other => {
            return Err(PowerError::Protocol(format!(
                "boot device selector {other:#x} is not one we set"
            )));
        }
    };
    Ok(BootFlags {
        valid: flags & 0x80 != 0,
        device,
        persistent: flags & 0x40 != 0,
        efi: flags & 0x20 != 0,
    })
}

/// What a non-zero completion code means, for the operator.
pub fn completion_code_meaning(code: u8) -> &'static str {
    match code {
        0xC0 => "node busy",
        0xC1 => "invalid command",
        0xC2 => "command invalid for this LUN",
        0xC3 => "timeout while processing the command",
        0xC4 => "out of space",
        0xC5 => "reservation cancelled or invalid",
        0xC6 => "request data truncated",
        0xC7 => "request data length invalid",
        0xC8 => "request data field length limit exceeded",
        0xC9 => "parameter out of range",
        0xCA => "cannot return the number of requested data bytes",
        0xCB => "requested sensor, data or record not present",
        0xCC => "invalid data field in request",
        0xCD => "command illegal for this sensor or record type",
        0xCE => "command response could not be provided",
        0xCF => "cannot execute a duplicated request",
        0xD0 => "SDR repository in update mode",
        0xD1 => "device in firmware update mode",
        0xD2 => "BMC initialisation in progress",
        0xD3 => "destination unavailable",
        0xD4 => "insufficient privilege level",
        0xD5 => "command not supported in present state",
        0xD6 => "command sub-function disabled or unavailable",
        0xFF => "unspecified error",
        _ => "unknown completion code",
    }
}

/// Whether a refusal may go away if the same command is sent again.
pub fn completion_code_is_transient(code: u8) -> bool {
    matches!(code, 0xC0 | 0xC3 | 0xCE | 0xD2)
}

/// The error for a refused command.
pub fn refused(req: &RawRequest, code: u8) -> PowerError {
    PowerError::Refused {
        code,
        message: format!(
            "{}: completion code {code:#04x} ({})",
            req.what,
            completion_code_meaning(code)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_control_codes() {
        for (action, code) in [
            (PowerAction::Off, 0),
            (PowerAction::On, 1),
            (PowerAction::Cycle, 2),
            (PowerAction::Reset, 3),
            (PowerAction::Diag, 4),
            (PowerAction::Soft, 5),
        ] {
            let r = chassis_control(action);
            assert_eq!(
                (r.netfn, r.cmd, r.data),
                (0x00, 0x02, vec![code]),
                "{action:?}"
            );
        }
    }

    #[test]
    fn boot_flags_round_trip() {
        for device in [
            BootDevice::Pxe,
            BootDevice::Disk,
            BootDevice::Safe,
            BootDevice::Cdrom,
            BootDevice::Bios,
            BootDevice::Floppy,
        ] {
            for persistent in [false, true] {
                for efi in [false, true] {
                    let want = BootRequest {
                        device,
                        persistent,
                        efi,
                    };
                    let set = set_boot_flags(want);
                    // The answer: version 1, parameter 5, then the flags.
                    let mut answer = vec![0x01, 0x05];
                    answer.extend_from_slice(&set.data[1..]);
                    let got = parse_boot_flags(&answer).unwrap();
                    assert!(got.valid);
                    assert_eq!(
                        (got.device, got.persistent, got.efi),
                        (Some(device), persistent, efi)
                    );
                }
            }
        }
    }

    #[test]
    fn boot_flags_as_ipmitool_sends_them() {
        // `ipmitool chassis bootdev pxe options=efiboot` sends 05 a0 04 00 00 00.
        let r = set_boot_flags(BootRequest {
            device: BootDevice::Pxe,
            persistent: false,
            efi: true,
        });
        assert_eq!(r.data, vec![0x05, 0xA0, 0x04, 0, 0, 0]);
        let r = set_boot_flags(BootRequest {
            device: BootDevice::Disk,
            persistent: true,
            efi: false,
        });
        assert_eq!(r.data, vec![0x05, 0xC0, 0x08, 0, 0, 0]);
    }

    #[test]
    fn boot_flags_answers() {
        // ipmi_sim keeps the device but not the valid bit.
        let kept = parse_boot_flags(&[1, 5, 0x00, 0x04, 0, 0, 0]).unwrap();
        assert_eq!((kept.valid, kept.device), (false, Some(BootDevice::Pxe)));
        assert_eq!(
            parse_boot_flags(&[1, 5, 0x80, 0x00, 0, 0, 0])
                .unwrap()
                .device,
            None
        );
        assert!(parse_boot_flags(&[1, 5]).is_err());
        assert!(parse_boot_flags(&[1, 4, 0x80, 0x04, 0, 0, 0]).is_err());
        assert_eq!(
            parse_boot_flags(&[1, 5, 0x80, 0x3C, 0, 0, 0])
                .unwrap()
                .device,
            Some(BootDevice::Floppy)
        );
        // Selectors we never set (remote media, primary remote) are not read.
        assert!(parse_boot_flags(&[1, 5, 0x80, 0x1C, 0, 0, 0]).is_err());
        // Bit 7 of the parameter byte (locked) is not part of the number.
        assert_eq!(
            parse_boot_flags(&[1, 0x85, 0x80, 0x04, 0, 0, 0])
                .unwrap()
                .device,
            Some(BootDevice::Pxe)
        );
    }

    #[test]
    fn chassis_status_power_bit() {
        assert_eq!(parse_chassis_status(&[0x01, 0, 0]).unwrap(), PowerState::On);
        assert_eq!(
            parse_chassis_status(&[0x60, 0, 0]).unwrap(),
            PowerState::Off
        );
        assert!(parse_chassis_status(&[]).is_err());
    }

    #[test]
    fn refusals_name_the_code() {
        let e = refused(&chassis_control(PowerAction::On), 0xD4);
        assert_eq!(
            e.to_string(),
            "the BMC refused: chassis control: completion code 0xd4 (insufficient privilege level)"
        );
        assert!(matches!(e, PowerError::Refused { code: 0xD4, .. }));
        assert!(completion_code_is_transient(0xC0));
        assert!(!completion_code_is_transient(0xD4));
    }
}
