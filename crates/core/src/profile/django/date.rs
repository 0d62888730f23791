//! `{% now "format" %}`: Django's date format characters (`dateformat.py`)
//! for a moment in UTC, as the older system rendered it (`USE_TZ = True`,
//! `TIME_ZONE = 'UTC'`, English).

use time::{OffsetDateTime, Weekday};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Associated Press style, as Django's `N`.
const MONTHS_AP: [&str; 12] = [
    "Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.",
    "Dec.",
];

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn twelve(hour: u8) -> u8 {
    match hour % 12 {
        0 => 12,
        h => h,
    }
}

/// Django's `f`: hours and minutes on a 12-hour clock, the minutes left
/// off when zero.
fn short_time(t: &OffsetDateTime) -> String {
    let h = twelve(t.hour());
    if t.minute() == 0 {
        h.to_string()
    } else {
        format!("{h}:{:02}", t.minute())
    }
}

fn ampm(t: &OffsetDateTime) -> &'static str {
    if t.hour() < 12 { "a.m." } else { "p.m." }
}

fn days_in_month(t: &OffsetDateTime) -> u8 {
    time::util::days_in_month(t.month(), t.year())
}

/// `format` applied to `t` (taken as UTC).
pub fn format(spec: &str, t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let month = usize::from(u8::from(t.month())) - 1;
    let mut out = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            'a' => out.push_str(ampm(&t)),
            'A' => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            'b' => out.push_str(&MONTHS[month][..3].to_lowercase()),
            'c' => {
                out.push_str(&format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ));
                if t.microsecond() != 0 {
                    out.push_str(&format!(".{:06}", t.microsecond()));
                }
                out.push_str("+00:00");
            }
            'd' => out.push_str(&format!("{:02}", t.day())),
            'D' => out.push_str(&weekday_name(t.weekday())[..3]),
            'e' | 'T' => out.push_str("UTC"),
            'E' | 'F' => out.push_str(MONTHS[month]),
            'f' => out.push_str(&short_time(&t)),
            'g' => out.push_str(&twelve(t.hour()).to_string()),
            'G' => out.push_str(&t.hour().to_string()),
            'h' => out.push_str(&format!("{:02}", twelve(t.hour()))),
            'H' => out.push_str(&format!("{:02}", t.hour())),
            'i' => out.push_str(&format!("{:02}", t.minute())),
            'I' | 'Z' => out.push('0'),
            'j' => out.push_str(&t.day().to_string()),
            'l' => out.push_str(weekday_name(t.weekday())),
            'L' => out.push_str(if time::util::is_leap_year(t.year()) {
                "True"
            } else {
                "False"
            }),
            'm' => out.push_str(&format!("{:02}", u8::from(t.month()))),
            'M' => out.push_str(&MONTHS[month][..3]),
            'n' => out.push_str(&u8::from(t.month()).to_string()),
            'N' => out.push_str(MONTHS_AP[month]),
            'o' => out.push_str(&t.to_iso_week_date().0.to_string()),
            'O' => out.push_str("+0000"),
            'P' => out.push_str(&match (t.hour(), t.minute()) {
                (0, 0) => "midnight".to_string(),
                (12, 0) => "noon".to_string(),
                _ => format!("{} {}", short_time(&t), ampm(&t)),
            }),
            'r' => out.push_str(&format(r"D, d M Y H:i:s O", t)),
            's' => out.push_str(&format!("{:02}", t.second())),
            'S' => out.push_str(match t.day() {
                11..=13 => "th",
                d if d % 10 == 1 => "st",
                d if d % 10 == 2 => "nd",
                d if d % 10 == 3 => "rd",
                _ => "th",
            }),
            't' => out.push_str(&days_in_month(&t).to_string()),
            'u' => out.push_str(&format!("{:06}", t.microsecond())),
            'U' => out.push_str(&t.unix_timestamp().to_string()),
            'w' => out.push_str(&t.weekday().number_days_from_sunday().to_string()),
            'W' => out.push_str(&t.iso_week().to_string()),
            'y' => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            'Y' => out.push_str(&format!("{:04}", t.year())),
            'z' => out.push_str(&t.ordinal().to_string()),
            other => out.push(other),
        }
    }
    out
}
