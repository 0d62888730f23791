//! Timeout durations: `90s`, `30m`, `1h`, `1h30m`, `2d`, or a bare integer of seconds.

use std::fmt;

/// Largest accepted duration: 7 days.
pub const MAX_DURATION_SECS: u64 = 7 * 24 * 3600;

/// A validated timeout, keeping both its length in seconds and its source text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Duration {
    /// Length in seconds (1..=604800).
    pub seconds: u64,
    /// The text as written in the profile (e.g. `"1h30m"`, or `"90"` for a bare number).
    pub text: String,
}

impl Duration {
    /// Parses duration text: units `d`, `h`, `m`, `s` in decreasing order, each at
    /// most once (`1h30m`, `2d`, `90s`), or a bare integer meaning seconds.
    /// The result must be greater than zero and at most 7 days.
    pub fn parse(text: &str) -> Result<Self, String> {
        let seconds = parse_seconds(text)?;
        if seconds == 0 {
            return Err(format!("duration {text:?} must be greater than zero"));
        }
        if seconds > MAX_DURATION_SECS {
            return Err(format!(
                "duration {text:?} is longer than the maximum of 7d"
            ));
        }
        Ok(Self {
            seconds,
            text: text.to_string(),
        })
    }

    /// As a `std::time::Duration`.
    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&Duration> for std::time::Duration {
    fn from(d: &Duration) -> Self {
        d.as_std()
    }
}

fn unit_seconds(unit: char) -> Option<(u64, usize)> {
    // (seconds per unit, rank: units must appear in increasing rank order)
    match unit {
        'd' => Some((86_400, 0)),
        'h' => Some((3_600, 1)),
        'm' => Some((60, 2)),
        's' => Some((1, 3)),
        _ => None,
    }
}

fn invalid(text: &str) -> String {
    format!(
        "invalid duration {text:?} (expected e.g. \"90s\", \"30m\", \"1h30m\", \"2d\" or a number of seconds)"
    )
}

fn parse_seconds(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err(invalid(text));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map_err(|_| invalid(text));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut next_rank = 0usize;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (per_unit, rank) = unit_seconds(c).ok_or_else(|| invalid(text))?;
        if digits.is_empty() || rank < next_rank {
            return Err(invalid(text));
        }
        let n: u64 = digits.parse().map_err(|_| invalid(text))?;
        total = n
            .checked_mul(per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is longer than the maximum of 7d"))?;
        digits.clear();
        next_rank = rank + 1;
    }
    if !digits.is_empty() {
        // trailing number without a unit, as in "1h30"
        return Err(invalid(text));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = Duration::parse(input);
        match (got, expected) {
            (Ok(d), Ok(secs)) => {
                assert_eq!(d.seconds, secs, "input {input:?}");
                assert_eq!(d.text, input);
            }
            (Err(e), Err(fragment)) => {
                assert!(
                    e.contains(fragment),
                    "input {input:?}: {e:?} lacks {fragment:?}"
                )
            }
            (got, expected) => panic!("input {input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn durations() {
        let table: &[(&str, Result<u64, &str>)] = &[
            ("90s", Ok(90)),
            ("30m", Ok(1800)),
            ("1h", Ok(3600)),
            ("1h30m", Ok(5400)),
            ("2d", Ok(172_800)),
            ("1d2h3m4s", Ok(93_784)),
            ("3600", Ok(3600)),
            ("7d", Ok(MAX_DURATION_SECS)),
            ("604800", Ok(MAX_DURATION_SECS)),
            ("0", Err("greater than zero")),
            ("0s", Err("greater than zero")),
            ("7d1s", Err("maximum")),
            ("604801", Err("maximum")),
            ("99999999999999999999999d", Err("invalid duration")),
            ("9999999999999999999d", Err("maximum")),
            ("", Err("invalid duration")),
            ("h", Err("invalid duration")),
            ("1x", Err("invalid duration")),
            ("30m1h", Err("invalid duration")),
            ("1h1h", Err("invalid duration")),
            ("1h30", Err("invalid duration")),
            ("-5", Err("invalid duration")),
            ("1.5h", Err("invalid duration")),
            (" 30m", Err("invalid duration")),
            ("30M", Err("invalid duration")),
        ];
        for (input, expected) in table {
            check(input, *expected);
        }
    }

    #[test]
    fn display_and_std() {
        let d = Duration::parse("1h30m").ok();
        assert_eq!(d.as_ref().map(|d| d.to_string()).as_deref(), Some("1h30m"));
        assert_eq!(
            d.as_ref().map(Duration::as_std),
            Some(std::time::Duration::from_secs(5400))
        );
    }
}
