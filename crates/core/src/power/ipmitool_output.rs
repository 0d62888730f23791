//! Reading what `ipmitool -v ... raw` printed. ipmitool's exit status does
//! not say enough (it exits 0 for some refusals, and 1 for every kind of
//! session failure), so the outcome is read from its output: the answer's
//! bytes on stdout, the reason for a failure on stderr (`-v` makes it name
//! it: a bad HMAC, an unknown user, no answer, an unsupported cipher
//! suite). Pure.

use super::PowerError;

/// The answer's data bytes, or why there is none. `what` names the
/// command in errors.
pub fn parse_raw(
    what: &str,
    exited_ok: bool,
    stdout: &str,
    stderr: &str,
) -> Result<Vec<u8>, PowerError> {
    if let Some(e) = failure(what, stderr) {
        return Err(e);
    }
    if !exited_ok {
        let last = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(PowerError::Protocol(format!(
            "{what}: ipmitool failed: {last}"
        )));
    }
    stdout
        .split_whitespace()
        .map(|t| {
            u8::from_str_radix(t, 16).map_err(|_| {
                PowerError::Protocol(format!("{what}: unexpected ipmitool output {t:?}"))
            })
        })
        .collect()
}

/// The first line of stderr that explains a failure.
fn failure(what: &str, stderr: &str) -> Option<PowerError> {
    for line in stderr.lines().map(str::trim) {
        let lower = line.to_ascii_lowercase();
        if let Some(code) = raw_refusal_code(line) {
            let meaning = line.rsplit_once("): ").map_or("", |(_, m)| m);
            return Some(PowerError::Refused {
                code,
                message: format!("{what}: completion code {code:#04x} ({meaning})"),
            });
        }
        if lower.contains("rakp 2 hmac is invalid")
            || lower.contains("rakp 4 message has invalid integrity")
        {
            return Some(PowerError::Auth(
                "the BMC did not accept the password".into(),
            ));
        }
        if lower.contains("unauthorized name") {
            return Some(PowerError::Auth(
                "the BMC does not know this user name".into(),
            ));
        }
        if lower.contains("requested privilege level")
            || lower.contains("insufficient resources for session")
        {
            return Some(PowerError::Auth(format!(
                "the BMC refused the session: {line}"
            )));
        }
        if lower.contains("invalid authentication algorithm")
            || lower.contains("invalid integrity algorithm")
            || lower.contains("invalid confidentiality algorithm")
            || lower.contains("no matching cipher suite")
        {
            return Some(PowerError::Unsupported(format!(
                "the BMC does not offer the configured cipher suite ({line})"
            )));
        }
        if lower.contains("address lookup for") || lower.contains("could not open socket") {
            return Some(PowerError::Unreachable(line.to_string()));
        }
        if lower.contains("get auth capabilities error")
            || lower.contains("no response from remote controller")
        {
            return Some(PowerError::Timeout(format!(
                "{what}: no answer from the BMC"
            )));
        }
    }
    None
}

/// `Unable to send RAW command (channel=0x0 netfn=0x0 lun=0x0 cmd=0x2 rsp=0xd4): ...`
fn raw_refusal_code(line: &str) -> Option<u8> {
    if !line.starts_with("Unable to send RAW command") {
        return None;
    }
    let at = line.find("rsp=0x")? + "rsp=0x".len();
    let hex: String = line[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u8::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each case is what ipmitool 1.8.19 printed against ipmi_sim.
    #[test]
    fn outcomes() {
        let verbose = "Loading IANA PEN Registry...\nRunning Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\n\
                       Invalid completion code received: Invalid command\nDiscovered IPMB address 0x0\n\
                       RAW REQ (channel=0x0 netfn=0x0 lun=0x0 cmd=0x9 data_len=3)\nRAW REQUEST (3 bytes)\n 05 00 00\nRAW RSP (7 bytes)\n";
        assert_eq!(
            parse_raw("get boot options", true, " 01 05 00 04 00 00 00\n", verbose).unwrap(),
            vec![1, 5, 0, 4, 0, 0, 0]
        );
        assert_eq!(
            parse_raw("chassis control", true, "\n", "RAW RSP (0 bytes)\n").unwrap(),
            Vec::<u8>::new()
        );

        let kind = |stderr: &str, ok: bool| parse_raw("x", ok, "", stderr).unwrap_err().kind();
        assert_eq!(
            kind(
                "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n",
                false
            ),
            "auth"
        );
        assert_eq!(
            kind(
                "RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2 / RMCP+ session\n",
                false
            ),
            "auth"
        );
        assert_eq!(
            kind(
                "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n",
                false
            ),
            "timeout"
        );
        assert_eq!(
            kind(
                "Address lookup for nonexistent.invalid failed\nCould not open socket!\n",
                false
            ),
            "unreachable"
        );
        assert_eq!(
            kind(
                "Error in open session response message : invalid authentication algorithm\n\nError: Unable to establish IPMI v2 / RMCP+ session\n",
                false
            ),
            "unsupported"
        );
        assert_eq!(kind("something new\n", false), "protocol");
    }

    #[test]
    fn refusals_carry_the_completion_code_even_with_exit_0() {
        let stderr = "Get HPM.x Capabilities request failed, compcode = d4\n\
                      Unable to send RAW command (channel=0x0 netfn=0x0 lun=0x0 cmd=0x2 rsp=0xd4): Insufficient privilege level\n";
        for ok in [true, false] {
            match parse_raw("chassis control", ok, "", stderr) {
                Err(PowerError::Refused { code, message }) => {
                    assert_eq!(code, 0xD4);
                    assert_eq!(
                        message,
                        "chassis control: completion code 0xd4 (Insufficient privilege level)"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn garbage_on_stdout_is_an_error() {
        assert!(parse_raw("x", true, " 01 zz\n", "").is_err());
    }
}
