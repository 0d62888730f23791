//! Django's built-in filters that make sense in a text file rendered
//! for one machine, each as `django/template/defaultfilters.py` defines
//! it, with its `is_safe` flag. Filters about dates, HTML markup, files
//! and translations are not here: a template that names one is refused
//! at upload (Django would say "Invalid filter" when the file is
//! rendered).

use super::value::{V, escape};

/// The filters this engine knows, each with whether it takes an
/// argument (`Some(true)` required, `Some(false)` optional, `None` none)
/// and Django's `is_safe`.
const FILTERS: &[(&str, Option<bool>, bool)] = &[
    ("add", Some(true), false),
    ("addslashes", None, true),
    ("capfirst", None, true),
    ("center", Some(true), true),
    ("cut", Some(true), false),
    ("default", Some(true), true),
    ("default_if_none", Some(true), true),
    ("divisibleby", Some(true), false),
    ("escape", None, true),
    ("first", None, true),
    ("force_escape", None, true),
    ("join", Some(true), true),
    ("last", None, true),
    ("length", None, true),
    ("linebreaksbr", None, true),
    ("ljust", Some(true), true),
    ("lower", None, true),
    ("make_list", None, false),
    ("pluralize", Some(false), false),
    ("rjust", Some(true), true),
    ("safe", None, true),
    ("slice", Some(true), true),
    ("slugify", None, true),
    ("title", None, true),
    ("truncatechars", Some(true), true),
    ("truncatewords", Some(true), true),
    ("upper", None, false),
    ("urlencode", Some(false), false),
    ("wordcount", None, false),
    ("yesno", Some(false), false),
];

pub fn known(name: &str) -> bool {
    FILTERS.iter().any(|(n, _, _)| *n == name)
}

/// Refuses an argument a filter does not take, or a missing one it needs
/// (Django's "requires 2 arguments, 1 provided").
pub fn check_arity(name: &str, has_arg: bool) -> Result<(), String> {
    let Some((_, takes, _)) = FILTERS.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("Invalid filter: '{name}'"));
    };
    match (takes, has_arg) {
        (None, true) => Err(format!("{name} requires 1 arguments, 2 provided")),
        (Some(true), false) => Err(format!("{name} requires 2 arguments, 1 provided")),
        _ => Ok(()),
    }
}

fn is_safe_filter(name: &str) -> bool {
    FILTERS.iter().any(|(n, _, safe)| *n == name && *safe)
}

/// Python's `int()` of a value, as `add` and friends try it (Python's
/// ints have no bound; these hold what a float can).
fn py_int(v: &V) -> Option<i128> {
    match v {
        V::Bool(b) => Some(i128::from(*b)),
        V::Int(i) => Some(i128::from(*i)),
        V::Float(f) if f.is_finite() && f.abs() < 1e38 => Some(f.trunc() as i128),
        V::Str(s, _) => s.trim().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// An integer result: an `Int` where it fits, else its digits.
fn int(i: i128) -> V {
    i64::try_from(i).map_or_else(|_| V::text(i.to_string()), V::Int)
}

/// Python's `len()`.
fn py_len(v: &V) -> Option<usize> {
    match v {
        V::Str(s, _) => Some(s.chars().count()),
        V::List(l) | V::Tuple(l) | V::View(_, l) => Some(l.len()),
        V::Map(m) => Some(m.len()),
        _ => None,
    }
}

/// `str.center`, `ljust`, `rjust` as Python pads.
fn pad(s: &str, width: i128, how: &str) -> String {
    // Wider than a file needs is a runaway template, not a layout.
    let width = width.min(1 << 20);
    let len = s.chars().count() as i128;
    if width <= len {
        return s.to_string();
    }
    let total = width - len;
    let left = match how {
        "ljust" => 0,
        "rjust" => total,
        _ => total / 2 + (total & width & 1),
    };
    format!(
        "{}{s}{}",
        " ".repeat(left as usize),
        " ".repeat((total - left) as usize)
    )
}

/// Python's `str.title()`, then Django's two corrections.
fn title(s: &str) -> String {
    let mut out = String::new();
    let mut prev_cased = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_cased = true;
        } else {
            out.push(c);
            prev_cased = false;
        }
    }
    // ([a-z])'([A-Z]) -> lower the letter after the apostrophe; \d([A-Z])
    // -> lower the letter after a digit.
    let chars: Vec<char> = out.chars().collect();
    let mut fixed = String::new();
    for (i, c) in chars.iter().enumerate() {
        let after_apostrophe = i >= 2
            && chars[i - 1] == '\''
            && chars[i - 2].is_ascii_lowercase()
            && c.is_ascii_uppercase();
        let after_digit = i >= 1 && chars[i - 1].is_ascii_digit() && c.is_ascii_uppercase();
        if after_apostrophe || after_digit {
            fixed.push(c.to_ascii_lowercase());
        } else {
            fixed.push(*c);
        }
    }
    fixed
}

/// Python's slice `[start:stop:step]` of a list of items.
fn slice<T: Clone>(items: &[T], spec: &str) -> Option<Vec<T>> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    let num = |s: &str| -> Option<Option<i64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let n = items.len() as i64;
    if parts.len() == 1 {
        // `slice:"2"` is `[:2]` in Django.
        let stop = num(parts[0])?.unwrap_or(n);
        let stop = if stop < 0 {
            (n + stop).max(0)
        } else {
            stop.min(n)
        };
        return Some(items[..stop as usize].to_vec());
    }
    let step = match parts.get(2) {
        Some(s) => num(s)?.unwrap_or(1),
        None => 1,
    };
    if step == 0 {
        return None;
    }
    let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
    let norm = |v: i64| if v < 0 { v + n } else { v };
    let (lo, hi) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let start = match num(parts[0])? {
        Some(v) => clamp(norm(v), lo, hi),
        None if step > 0 => 0,
        None => n - 1,
    };
    let stop = match num(parts[1])? {
        Some(v) => clamp(norm(v), lo, hi),
        None if step > 0 => n,
        None => -1,
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(items[i as usize].clone());
        i += step;
    }
    Some(out)
}

/// `urllib.parse.quote(value, safe)`.
fn quote(s: &str, safe: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let c = b as char;
        if b.is_ascii_alphanumeric() || "_.-~".contains(c) || (b < 128 && safe.contains(c)) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Applies filter `name` to `value` with `arg`; `autoescape` is the
/// block's setting (for the filters that escape what they join).
pub fn apply(name: &str, value: V, arg: Option<V>, autoescape: bool) -> V {
    let input_safe = value.is_safe();
    let text = || value.to_text();
    let arg_text = || arg.as_ref().map(V::to_text).unwrap_or_default();
    let result = match name {
        "add" => match (py_int(&value), arg.as_ref().and_then(py_int)) {
            (Some(a), Some(b)) => int(a.saturating_add(b)),
            _ => match (&value, &arg) {
                (V::Str(a, _), Some(V::Str(b, _))) => V::text(format!("{a}{b}")),
                (V::List(a), Some(V::List(b))) => V::List(a.iter().chain(b).cloned().collect()),
                (a, Some(b)) => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => V::Float(x + y),
                    _ => V::text(""),
                },
                _ => V::text(""),
            },
        },
        "addslashes" => V::text(
            text()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\'', "\\'"),
        ),
        "capfirst" => {
            let t = text();
            let mut chars = t.chars();
            match chars.next() {
                Some(c) => V::text(c.to_uppercase().chain(chars).collect::<String>()),
                None => V::text(""),
            }
        }
        "center" | "ljust" | "rjust" => match arg.as_ref().and_then(py_int) {
            Some(w) => V::text(pad(&text(), w, name)),
            None => value.clone(),
        },
        "cut" => {
            let a = arg_text();
            let cut = V::text(text().replace(&a, ""));
            return if input_safe && a != ";" {
                V::safe(cut.to_text())
            } else {
                cut
            };
        }
        "default" => {
            return if value.truthy() {
                value
            } else {
                arg.unwrap_or(V::text(""))
            };
        }
        "default_if_none" => {
            return if value == V::None {
                arg.unwrap_or(V::text(""))
            } else {
                value
            };
        }
        "divisibleby" => match (py_int(&value), arg.as_ref().and_then(py_int)) {
            (Some(a), Some(b)) if b != 0 => V::Bool(a % b == 0),
            _ => V::text(""),
        },
        "escape" => {
            return if input_safe {
                value
            } else {
                V::safe(escape(&text()))
            };
        }
        "force_escape" => return V::safe(escape(&text())),
        "first" | "last" => {
            // Python indexes lists, tuples and strings, not dicts or views.
            let items = match &value {
                V::Map(_) | V::View(..) => None,
                v => v.items(),
            };
            match items {
                Some(items) => {
                    let item = if name == "first" {
                        items.first()
                    } else {
                        items.last()
                    };
                    item.cloned().unwrap_or(V::text(""))
                }
                None => V::text(""),
            }
        }
        "join" => {
            let Some(items) = (match &value {
                V::List(_) | V::Tuple(_) | V::View(..) | V::Str(..) => value.items(),
                _ => None,
            }) else {
                return value;
            };
            let sep = arg.clone().unwrap_or(V::text(""));
            let show = |v: &V| {
                if autoescape && !v.is_safe() {
                    escape(&v.to_text())
                } else {
                    v.to_text()
                }
            };
            let joined = items.iter().map(show).collect::<Vec<_>>().join(&show(&sep));
            return V::safe(joined);
        }
        "length" => V::Int(py_len(&value).unwrap_or(0) as i64),
        "linebreaksbr" => {
            let t = text().replace("\r\n", "\n").replace('\r', "\n");
            let t = if autoescape && !input_safe {
                escape(&t)
            } else {
                t
            };
            return V::safe(t.replace('\n', "<br>"));
        }
        "lower" => V::text(text().to_lowercase()),
        "make_list" => V::List(text().chars().map(|c| V::text(c.to_string())).collect()),
        "pluralize" => {
            let spec = arg.as_ref().map_or("s".to_string(), V::to_text);
            let spec = if spec.contains(',') {
                spec
            } else {
                format!(",{spec}")
            };
            let bits: Vec<&str> = spec.split(',').collect();
            if bits.len() > 2 {
                return V::text("");
            }
            let (singular, plural) = (bits[0], bits[1]);
            let one = match &value {
                V::Str(s, _) => match s.trim().parse::<f64>() {
                    Ok(f) => Some(f == 1.0),
                    Err(_) => None,
                },
                V::List(_) | V::Tuple(_) | V::View(..) | V::Map(_) => {
                    py_len(&value).map(|n| n == 1)
                }
                v => v.as_f64().map(|f| f == 1.0),
            };
            match one {
                Some(true) => V::text(singular),
                Some(false) => V::text(plural),
                None => V::text(""),
            }
        }
        "safe" => return V::safe(text()),
        "slice" => {
            let spec = arg_text();
            match &value {
                V::List(l) => match slice(l, &spec) {
                    Some(s) => V::List(s),
                    None => value.clone(),
                },
                _ => {
                    let chars: Vec<char> = text().chars().collect();
                    match slice(&chars, &spec) {
                        Some(s) => V::text(s.into_iter().collect::<String>()),
                        None => value.clone(),
                    }
                }
            }
        }
        "slugify" => {
            use unicode_normalization::UnicodeNormalization;
            let ascii: String = text().nfkd().filter(char::is_ascii).collect();
            let lowered = ascii.to_lowercase();
            let kept: String = lowered
                .chars()
                .filter(|c| {
                    c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || c.is_whitespace()
                })
                .collect();
            let mut out = String::new();
            let mut run = false;
            for c in kept.chars() {
                if c == '-' || c.is_whitespace() {
                    run = true;
                } else {
                    if run {
                        out.push('-');
                    }
                    run = false;
                    out.push(c);
                }
            }
            if run {
                out.push('-');
            }
            V::text(out.trim_matches(['-', '_']).to_string())
        }
        "title" => V::text(title(&text())),
        "truncatechars" => match arg.as_ref().and_then(py_int) {
            Some(n) if n > 0 => {
                let chars: Vec<char> = text().chars().collect();
                if chars.len() as i128 > n {
                    let mut s: String = chars[..(n - 1) as usize].iter().collect();
                    s.push('…');
                    V::text(s)
                } else {
                    V::text(text())
                }
            }
            Some(_) => V::text("…"),
            None => value.clone(),
        },
        "truncatewords" => match arg.as_ref().and_then(py_int) {
            Some(n) => {
                let t = text();
                let words: Vec<&str> = t.split_whitespace().collect();
                let n = n.clamp(0, 1 << 20) as usize;
                if words.len() > n {
                    V::text(format!("{} …", words[..n].join(" ")))
                } else {
                    V::text(t.clone())
                }
            }
            None => value.clone(),
        },
        "upper" => V::text(text().to_uppercase()),
        "urlencode" => {
            let safe = arg.as_ref().map_or("/".to_string(), V::to_text);
            V::text(quote(&text(), &safe))
        }
        "wordcount" => V::Int(text().split_whitespace().count() as i64),
        "yesno" => {
            let spec = arg.as_ref().map_or("yes,no,maybe".to_string(), V::to_text);
            let bits: Vec<&str> = spec.split(',').collect();
            if bits.len() < 2 {
                return value;
            }
            let maybe = bits.get(2).copied().unwrap_or(bits[1]);
            V::text(if value == V::None {
                maybe
            } else if value.truthy() {
                bits[0]
            } else {
                bits[1]
            })
        }
        _ => value.clone(),
    };
    if input_safe && is_safe_filter(name) {
        match result {
            V::Str(s, _) => V::safe(s),
            other => V::safe(other.to_text()),
        }
    } else {
        result
    }
}
