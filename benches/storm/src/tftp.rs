//! The network boot program's download as a PXE ROM does it: a read
//! request asking `tsize` (the size, to see that the file fits), an ERROR
//! 8 that aborts that transfer once the OACK tells it, then the real
//! transfer in lock-step, one ACK per block.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

pub struct Fetched {
    pub bytes: u64,
    pub retransmits: u32,
}

pub struct Fetch<'a> {
    pub from: Ipv4Addr,
    pub server: SocketAddr,
    pub file: &'a str,
    pub blksize: u16,
    /// How long to wait for each packet before sending again.
    pub wait: Duration,
    pub tries: u32,
}

impl Fetch<'_> {
    pub async fn run(&self) -> Result<Fetched, String> {
        let mut retransmits = 0;
        let tsize = self.probe(&mut retransmits).await?;
        let bytes = self.transfer(&mut retransmits).await?;
        if tsize.is_some_and(|t| t != bytes) {
            return Err(format!(
                "{}: tsize said {} bytes, the transfer gave {bytes}",
                self.file,
                tsize.unwrap_or(0)
            ));
        }
        Ok(Fetched { bytes, retransmits })
    }

    /// The size probe: RRQ with tsize, read the OACK, abort with ERROR 8.
    async fn probe(&self, retransmits: &mut u32) -> Result<Option<u64>, String> {
        let socket = self.socket().await?;
        let rrq = request(
            self.file,
            &[("tsize", "0"), ("blksize", &self.blksize.to_string())],
        );
        let (packet, tid) = self
            .exchange(&socket, &rrq, self.server, retransmits, |op, _| {
                op == OACK || op == DATA
            })
            .await
            .map_err(|e| format!("tsize probe: {e}"))?;
        let tsize = if opcode(&packet) == OACK {
            option(&packet[2..], "tsize").and_then(|v| v.parse().ok())
        } else {
            None
        };
        let mut abort = vec![0, ERROR as u8, 0, 8];
        abort.extend_from_slice(b"User aborted the transfer\0");
        socket
            .send_to(&abort, tid)
            .await
            .map_err(|e| format!("send ERROR: {e}"))?;
        Ok(tsize)
    }

    async fn transfer(&self, retransmits: &mut u32) -> Result<u64, String> {
        let socket = self.socket().await?;
        let blksize = self.blksize.to_string();
        let mut last = request(self.file, &[("blksize", &blksize)]);
        let mut to = self.server;
        let mut expected: u16 = 1;
        let mut size = 512usize;
        let mut bytes = 0u64;
        let mut first = true;
        loop {
            let want = expected;
            let (packet, tid) = self
                .exchange(&socket, &last, to, retransmits, |op, block| {
                    (first && op == OACK) || (op == DATA && block == want)
                })
                .await
                .map_err(|e| format!("block {expected}: {e}"))?;
            to = tid;
            if opcode(&packet) == OACK {
                first = false;
                size = option(&packet[2..], "blksize")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(512);
                last = vec![0, ACK as u8, 0, 0];
                continue;
            }
            first = false;
            let data = packet.len() - 4;
            bytes += data as u64;
            last = vec![0, ACK as u8];
            last.extend_from_slice(&expected.to_be_bytes());
            if data < size {
                socket
                    .send_to(&last, to)
                    .await
                    .map_err(|e| format!("send ACK: {e}"))?;
                return Ok(bytes);
            }
            expected = expected.wrapping_add(1);
        }
    }

    async fn socket(&self) -> Result<UdpSocket, String> {
        UdpSocket::bind((self.from, 0))
            .await
            .map_err(|e| format!("bind {}: {e}", self.from))
    }

    /// Sends `out` to `to` until a packet that `wanted` accepts arrives
    /// (an ERROR ends it); returns it and where it came from.
    async fn exchange(
        &self,
        socket: &UdpSocket,
        out: &[u8],
        to: SocketAddr,
        retransmits: &mut u32,
        wanted: impl Fn(u16, u16) -> bool,
    ) -> Result<(Vec<u8>, SocketAddr), String> {
        let mut buf = vec![0u8; usize::from(self.blksize) + 4 + 64];
        for n in 0..self.tries {
            if n > 0 {
                *retransmits += 1;
            }
            socket
                .send_to(out, to)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let deadline = tokio::time::Instant::now() + self.wait;
            while let Ok(got) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            {
                let (len, from) = got.map_err(|e| format!("receive: {e}"))?;
                let packet = &buf[..len];
                if len < 4 {
                    continue;
                }
                let op = opcode(packet);
                if op == ERROR {
                    let text = String::from_utf8_lossy(&packet[4..]);
                    return Err(format!(
                        "server ERROR {}: {}",
                        u16::from_be_bytes([packet[2], packet[3]]),
                        text.trim_end_matches('\0')
                    ));
                }
                if wanted(op, u16::from_be_bytes([packet[2], packet[3]])) {
                    return Ok((packet.to_vec(), from));
                }
            }
        }
        Err(format!("no answer after {} tries", self.tries))
    }
}

fn opcode(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[0], packet[1]])
}

fn request(file: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, RRQ as u8];
    for part in [file, "octet"]
        .iter()
        .chain(options.iter().flat_map(|(k, v)| [k, v]))
    {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// The value of option `name` in an OACK's body.
fn option<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    let mut parts = body.split(|b| *b == 0).map(|p| std::str::from_utf8(p).ok());
    while let (Some(Some(k)), Some(Some(v))) = (parts.next(), parts.next()) {
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_oacks() {
        assert_eq!(
            request("undionly.kpxe", &[("tsize", "0")]),
            b"\0\x01undionly.kpxe\0octet\0tsize\x000\0".to_vec()
        );
        let oack = b"tsize\x0070000\0BLKSIZE\x001456\0";
        assert_eq!(option(oack, "tsize"), Some("70000"));
        assert_eq!(option(oack, "blksize"), Some("1456"));
        assert_eq!(option(oack, "windowsize"), None);
        assert_eq!(option(b"tsize", "tsize"), None);
    }
}
