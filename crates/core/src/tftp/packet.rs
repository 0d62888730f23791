//! TFTP packets (RFC 1350) with options (RFC 2347): decode from and encode
//! to bytes. Pure: no sockets, no files.

use std::fmt;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// TFTP error codes (RFC 1350, 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined,
    FileNotFound,
    AccessViolation,
    DiskFull,
    IllegalOperation,
    UnknownTransferId,
    FileExists,
    NoSuchUser,
    /// The client refuses the options (RFC 2347), e.g. after a tsize probe.
    OptionsRefused,
    Other(u16),
}

impl ErrorCode {
    pub fn from_u16(code: u16) -> Self {
        match code {
            0 => Self::NotDefined,
            1 => Self::FileNotFound,
            2 => Self::AccessViolation,
            3 => Self::DiskFull,
            4 => Self::IllegalOperation,
            5 => Self::UnknownTransferId,
            6 => Self::FileExists,
            7 => Self::NoSuchUser,
            8 => Self::OptionsRefused,
            other => Self::Other(other),
        }
    }

    pub fn as_u16(self) -> u16 {
        match self {
            Self::NotDefined => 0,
            Self::FileNotFound => 1,
            Self::AccessViolation => 2,
            Self::DiskFull => 3,
            Self::IllegalOperation => 4,
            Self::UnknownTransferId => 5,
            Self::FileExists => 6,
            Self::NoSuchUser => 7,
            Self::OptionsRefused => 8,
            Self::Other(c) => c,
        }
    }
}

/// A request's transfer mode. Only `octet` is served; `netascii` is
/// accepted and served as octet, as PXE clients never ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    pub mode: Mode,
    /// Options in the order given, names lower-cased.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: ErrorCode, message: String },
    Oack { options: Vec<(String, String)> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort,
    UnknownOpcode(u16),
    /// A string field without its terminating NUL.
    Unterminated(&'static str),
    NotUtf8(&'static str),
    UnknownMode(String),
    /// An option name without a value.
    OptionWithoutValue(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("packet too short"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            Self::Unterminated(what) => write!(f, "{what} is not NUL-terminated"),
            Self::NotUtf8(what) => write!(f, "{what} is not text"),
            Self::UnknownMode(_) => f.write_str("unknown mode"),
            Self::OptionWithoutValue(_) => f.write_str("an option has no value"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Splits off one NUL-terminated string.
fn take_str<'a>(buf: &'a [u8], what: &'static str) -> Result<(&'a str, &'a [u8]), DecodeError> {
    let end = buf
        .iter()
        .position(|&b| b == 0)
        .ok_or(DecodeError::Unterminated(what))?;
    let s = std::str::from_utf8(&buf[..end]).map_err(|_| DecodeError::NotUtf8(what))?;
    Ok((s, &buf[end + 1..]))
}

/// Reads options leniently, as firmware in the wild needs: parsing stops
/// at an empty name (NUL padding), and of a repeated option the first
/// counts (RFC 2347 lets a server ignore what it does not take).
fn take_options(mut rest: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut options: Vec<(String, String)> = Vec::new();
    while !rest.is_empty() {
        let (name, after) = take_str(rest, "option name")?;
        if name.is_empty() {
            break;
        }
        if after.is_empty() {
            return Err(DecodeError::OptionWithoutValue(name.to_string()));
        }
        let (value, after) = take_str(after, "option value")?;
        let name = name.to_ascii_lowercase();
        if !options.iter().any(|(n, _)| *n == name) {
            options.push((name, value.to_string()));
        }
        rest = after;
    }
    Ok(options)
}

fn take_request(body: &[u8]) -> Result<Request, DecodeError> {
    let (filename, rest) = take_str(body, "filename")?;
    let (mode, rest) = take_str(rest, "mode")?;
    let mode = match mode.to_ascii_lowercase().as_str() {
        "octet" => Mode::Octet,
        "netascii" => Mode::Netascii,
        other => return Err(DecodeError::UnknownMode(other.to_string())),
    };
    Ok(Request {
        filename: filename.to_string(),
        mode,
        options: take_options(rest)?,
    })
}

fn be16(buf: &[u8]) -> Result<u16, DecodeError> {
    match buf {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(DecodeError::TooShort),
    }
}

/// Decodes one datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let opcode = be16(buf)?;
    let body = &buf[2..];
    match opcode {
        OP_RRQ => take_request(body).map(Packet::Rrq),
        OP_WRQ => take_request(body).map(Packet::Wrq),
        OP_DATA => Ok(Packet::Data {
            block: be16(body)?,
            data: &body[2..],
        }),
        OP_ACK => {
            let block = be16(body)?;
            // Some clients pad ACKs; anything after the block number is ignored.
            Ok(Packet::Ack { block })
        }
        OP_ERROR => {
            let code = ErrorCode::from_u16(be16(body)?);
            // Clients in the wild omit the final NUL: accept that.
            let text = &body[2..];
            let text = match text.iter().position(|&b| b == 0) {
                Some(end) => &text[..end],
                None => text,
            };
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(text).into_owned(),
            })
        }
        OP_OACK => Ok(Packet::Oack {
            options: take_options(body)?,
        }),
        other => Err(DecodeError::UnknownOpcode(other)),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_request(out: &mut Vec<u8>, opcode: u16, r: &Request) {
    out.extend_from_slice(&opcode.to_be_bytes());
    put_str(out, &r.filename);
    put_str(
        out,
        match r.mode {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
        },
    );
    for (name, value) in &r.options {
        put_str(out, name);
        put_str(out, value);
    }
}

/// Appends the wire form of `packet` to `out`.
pub fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) {
    match packet {
        Packet::Rrq(r) => put_request(out, OP_RRQ, r),
        Packet::Wrq(r) => put_request(out, OP_WRQ, r),
        Packet::Data { block, data } => {
            out.extend_from_slice(&OP_DATA.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
            out.extend_from_slice(data);
        }
        Packet::Ack { block } => {
            out.extend_from_slice(&OP_ACK.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
        }
        Packet::Error { code, message } => {
            out.extend_from_slice(&OP_ERROR.to_be_bytes());
            out.extend_from_slice(&code.as_u16().to_be_bytes());
            // A NUL inside the message would end it early on the wire.
            put_str(out, &message.replace('\0', " "));
        }
        Packet::Oack { options } => {
            out.extend_from_slice(&OP_OACK.to_be_bytes());
            for (name, value) in options {
                put_str(out, name);
                put_str(out, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], expected: Result<Packet<'_>, DecodeError>) {
        assert_eq!(decode(bytes), expected, "decoding {bytes:?}");
        if let Ok(p) = &expected {
            let mut out = Vec::new();
            encode(p, &mut out);
            assert_eq!(decode(&out).as_ref(), Ok(p), "round trip of {p:?}");
        }
    }

    #[test]
    fn decodes_what_clients_send() {
        check(
            b"\x00\x01undionly.kpxe\x00octet\x00tsize\x000\x00BLKSIZE\x001468\x00",
            Ok(Packet::Rrq(Request {
                filename: "undionly.kpxe".into(),
                mode: Mode::Octet,
                options: vec![
                    ("tsize".into(), "0".into()),
                    ("blksize".into(), "1468".into()),
                ],
            })),
        );
        check(
            b"\x00\x01f\x00NetASCII\x00",
            Ok(Packet::Rrq(Request {
                filename: "f".into(),
                mode: Mode::Netascii,
                options: vec![],
            })),
        );
        check(b"\x00\x04\x00\x07", Ok(Packet::Ack { block: 7 }));
        check(b"\x00\x04\x00\x07\x00\x00", Ok(Packet::Ack { block: 7 }));
        check(
            b"\x00\x05\x00\x08tsize probe\x00",
            Ok(Packet::Error {
                code: ErrorCode::OptionsRefused,
                message: "tsize probe".into(),
            }),
        );
        check(
            b"\x00\x05\x00\x00no nul",
            Ok(Packet::Error {
                code: ErrorCode::NotDefined,
                message: "no nul".into(),
            }),
        );
        check(
            b"\x00\x03\x00\x01abc",
            Ok(Packet::Data {
                block: 1,
                data: b"abc",
            }),
        );
    }

    #[test]
    fn refuses_malformed_packets() {
        check(b"", Err(DecodeError::TooShort));
        check(b"\x00", Err(DecodeError::TooShort));
        check(b"\x00\x04\x00", Err(DecodeError::TooShort));
        check(b"\x00\x09", Err(DecodeError::UnknownOpcode(9)));
        check(b"\x00\x01file", Err(DecodeError::Unterminated("filename")));
        check(
            b"\x00\x01file\x00octet",
            Err(DecodeError::Unterminated("mode")),
        );
        check(
            b"\x00\x01file\x00mail\x00",
            Err(DecodeError::UnknownMode("mail".into())),
        );
        check(
            b"\x00\x01f\x00octet\x00tsize\x00",
            Err(DecodeError::OptionWithoutValue("tsize".into())),
        );
        // A repeated option: the first counts. NUL padding ends the options.
        assert_eq!(
            decode(b"\x00\x01f\x00octet\x00tsize\x000\x00TSIZE\x009\x00\x00\x00"),
            Ok(Packet::Rrq(Request {
                filename: "f".into(),
                mode: Mode::Octet,
                options: vec![("tsize".into(), "0".into())],
            }))
        );
        check(
            b"\x00\x01\xff\x00octet\x00",
            Err(DecodeError::NotUtf8("filename")),
        );
    }
}
