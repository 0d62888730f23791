//! Ethernet MAC addresses, normalised to lower-case colon form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address. Parses `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`,
/// `aabb.ccdd.eeff` and `aabbccddeeff`; displays as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex octets such as 52:54:00:12:34:56)")]
pub struct MacParseError(pub String);

impl MacAddr {
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Why no network card can have this address: all zeros, broadcast, or
    /// a multicast group (the low bit of the first octet). `None` for a
    /// unicast address a NIC may carry.
    pub fn not_assignable(&self) -> Option<&'static str> {
        if self.0 == [0; 6] {
            Some("is all zeros, which no network card has")
        } else if self.0 == [0xff; 6] {
            Some("is the broadcast address, which no network card has")
        } else if self.0[0] & 1 == 1 {
            Some("is a multicast address (the first octet is odd), which no network card has")
        } else {
            None
        }
    }

    /// `aa-bb-cc-dd-ee-ff`, the form pxelinux uses in `pxelinux.cfg/01-...`.
    pub fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let trimmed = s.trim();
        // The twelve digits' values, separators left out (no allocation:
        // every boot request parses a MAC).
        let mut digits = [0u8; 12];
        let mut count = 0;
        for b in trimmed.bytes().filter(|b| !matches!(b, b':' | b'-' | b'.')) {
            let value = char::from(b).to_digit(16).ok_or_else(err)?;
            *digits.get_mut(count).ok_or_else(err)? = value as u8;
            count += 1;
        }
        if count != 12 {
            return Err(err());
        }
        // Separators must be consistent with one of the accepted layouts.
        let layout_ok = match trimmed.len() {
            12 => true,
            17 => {
                let sep = trimmed.as_bytes()[2];
                (sep == b':' || sep == b'-')
                    && trimmed
                        .bytes()
                        .enumerate()
                        .all(|(i, b)| if i % 3 == 2 { b == sep } else { b != sep })
            }
            14 => trimmed
                .bytes()
                .enumerate()
                .all(|(i, b)| (i == 4 || i == 9) == (b == b'.')),
            _ => false,
        };
        if !layout_ok {
            return Err(err());
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            *octet = digits[i * 2] << 4 | digits[i * 2 + 1];
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b':'; 17];
        for (i, octet) in self.0.iter().enumerate() {
            text[i * 3] = HEX[usize::from(octet >> 4)];
            text[i * 3 + 1] = HEX[usize::from(octet & 0xf)];
        }
        // Only ASCII hex digits and colons.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let got = input.parse::<MacAddr>().ok().map(|m| m.to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn parses_the_usual_layouts() {
        check("52:54:00:12:34:56", Some("52:54:00:12:34:56"));
        check("52-54-00-AB-CD-EF", Some("52:54:00:ab:cd:ef"));
        check("5254.00ab.cdef", Some("52:54:00:ab:cd:ef"));
        check("525400ABCDEF", Some("52:54:00:ab:cd:ef"));
        check(" 52:54:00:12:34:56 ", Some("52:54:00:12:34:56"));
        check("52:54:00:12:34", None);
        check("52:54:00:12:34:5g", None);
        check("52:54-00:12:34:56", None);
        check("5:254:00:12:34:56", None);
        check("", None);
        check("52:54:00:12:34:56:78", None);
        check("52:54:00:12:34:é6", None);
        check("ff:FF:0a:A0:09:90", Some("ff:ff:0a:a0:09:90"));
        check("52:54:00:12:34:56:", None);
    }

    #[test]
    fn only_unicast_addresses_are_assignable() {
        for (mac, ok) in [
            ("52:54:00:12:34:56", true),
            ("00:00:00:00:00:00", false),
            ("ff:ff:ff:ff:ff:ff", false),
            ("01:00:5e:00:00:01", false),
            ("33:33:00:00:00:01", false),
        ] {
            let m: MacAddr = mac.parse().unwrap();
            assert_eq!(m.not_assignable().is_none(), ok, "{mac}");
        }
    }

    #[test]
    fn dashed_form() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(mac.dashed(), "52-54-00-12-34-56");
    }
}
