//! Values as a Django template sees Python's: truth, equality, order,
//! and the text `str()` gives them, plus whether a string is marked safe
//! (not escaped again).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// The text, and whether it is safe (escaped already, or a literal).
    Str(String, bool),
    List(Vec<V>),
    Tuple(Vec<V>),
    /// What a dict's `items`, `keys` or `values` gives (`dict_items` ...).
    View(&'static str, Vec<V>),
    Map(Vec<(String, V)>),
}

impl V {
    pub fn text(s: impl Into<String>) -> Self {
        Self::Str(s.into(), false)
    }

    pub fn safe(s: impl Into<String>) -> Self {
        Self::Str(s.into(), true)
    }

    pub fn from_json(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Self::None,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Self::text(s.clone()),
            serde_json::Value::Array(a) => Self::List(a.iter().map(Self::from_json).collect()),
            serde_json::Value::Object(m) => Self::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Self::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Python's name of the value's type, for errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::None => "NoneType",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(..) => "str",
            Self::List(_) => "list",
            Self::Tuple(_) => "tuple",
            Self::View(kind, _) => kind,
            Self::Map(_) => "dict",
        }
    }

    pub fn is_safe(&self) -> bool {
        matches!(self, Self::Str(_, true))
    }

    /// Python's truth.
    pub fn truthy(&self) -> bool {
        match self {
            Self::None => false,
            Self::Bool(b) => *b,
            Self::Int(i) => *i != 0,
            Self::Float(f) => *f != 0.0,
            Self::Str(s, _) => !s.is_empty(),
            Self::List(l) | Self::Tuple(l) | Self::View(_, l) => !l.is_empty(),
            Self::Map(m) => !m.is_empty(),
        }
    }

    /// As `{{ }}` prints it: `str()`, except that a float goes through
    /// Django's `localize` (no exponent: 1e+20 prints all its digits).
    pub fn to_print(&self) -> String {
        match self {
            Self::Float(f) => float_plain(*f),
            other => other.to_text(),
        }
    }

    /// Python's `str()`.
    pub fn to_text(&self) -> String {
        match self {
            Self::Str(s, _) => s.clone(),
            other => other.repr(),
        }
    }

    /// Python's `repr()`, which `str()` of a container uses for items.
    pub fn repr(&self) -> String {
        match self {
            Self::None => "None".to_string(),
            Self::Bool(true) => "True".to_string(),
            Self::Bool(false) => "False".to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => float_text(*f),
            Self::Str(s, _) => str_repr(s),
            Self::List(l) => format!("[{}]", reprs(l)),
            Self::Tuple(l) if l.len() == 1 => format!("({},)", reprs(l)),
            Self::Tuple(l) => format!("({})", reprs(l)),
            Self::View(kind, l) => format!("{kind}([{}])", reprs(l)),
            Self::Map(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}: {}", str_repr(k), v.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Bool(b) => Some(f64::from(u8::from(*b))),
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Python's `==` between these types.
    pub fn py_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Str(a, _), Self::Str(b, _)) => a == b,
            (Self::None, Self::None) => true,
            (Self::List(a), Self::List(b)) | (Self::Tuple(a), Self::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            (Self::Map(a), Self::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v.py_eq(v2)))
            }
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }

    /// Python's ordering; `None` where Python raises (Django then says
    /// the comparison is false).
    pub fn py_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Str(a, _), Self::Str(b, _)) => Some(a.cmp(b)),
            (Self::List(a), Self::List(b)) | (Self::Tuple(a), Self::Tuple(b)) => {
                for (x, y) in a.iter().zip(b) {
                    if !x.py_eq(y) {
                        return x.py_cmp(y);
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }

    /// Python's `in`: an item of a list, a key of a dict, a substring.
    pub fn contains(&self, item: &Self) -> Option<bool> {
        match (self, item) {
            (Self::List(l) | Self::Tuple(l) | Self::View(_, l), x) => {
                Some(l.iter().any(|y| y.py_eq(x)))
            }
            (Self::Map(m), Self::Str(k, _)) => Some(m.iter().any(|(key, _)| key == k)),
            (Self::Map(_), _) => Some(false),
            (Self::Str(s, _), Self::Str(sub, _)) => Some(s.contains(sub.as_str())),
            _ => None,
        }
    }

    /// What `for` walks: a list's items, a dict's keys, a string's
    /// characters.
    pub fn items(&self) -> Option<Vec<V>> {
        match self {
            Self::List(l) | Self::Tuple(l) | Self::View(_, l) => Some(l.clone()),
            Self::Map(m) => Some(m.iter().map(|(k, _)| Self::text(k.clone())).collect()),
            Self::Str(s, safe) => {
                Some(s.chars().map(|c| Self::Str(c.to_string(), *safe)).collect())
            }
            _ => None,
        }
    }
}

fn reprs(items: &[V]) -> String {
    items.iter().map(V::repr).collect::<Vec<_>>().join(", ")
}

/// A float as Django's `number_format` writes it: Python's `repr`, or,
/// where that has an exponent, every digit written out.
pub fn float_plain(f: f64) -> String {
    let r = float_text(f);
    let Some((mantissa, exp)) = r.split_once('e') else {
        return r;
    };
    let exp: i64 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches('-');
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exp;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    if negative { format!("-{body}") } else { body }
}

/// Python's `repr()` of a float.
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // 1e+16, 1.5e-05: Python's exponent has a sign and two digits.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Python's `repr()` of a string.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Django's `escape`: & < > " ' as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}
