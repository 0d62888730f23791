//! The service manager's notification protocol (sd_notify): `READY=1` once
//! every listener is bound and serving, `RELOADING=1`/`READY=1` around a
//! configuration reload, `STOPPING=1` when a stop begins, and `STATUS=`
//! lines. A datagram to `$NOTIFY_SOCKET` (a path, or `@name` for an
//! abstract socket); nothing at all without that variable.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` lines); failures are
/// logged, never fatal: the daemon serves either way.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        _ => {
            socket.send_to(state.as_bytes(), std::path::Path::new(target))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::send(path.as_os_str(), "READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    }
}
