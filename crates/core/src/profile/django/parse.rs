//! Django template source -> nodes. The tokens are found as Django's lexer
//! finds them (`{{ }}`, `{% %}`, `{# #}`, each closed on its own line,
//! `verbatim` blocks left as text); expressions are read as its
//! `FilterExpression` and `smartif` read them.

use super::filters;

/// A literal, or a variable path (`server.labels.rack`).
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Str(String),
    Int(i64),
    Float(f64),
    /// `None`, `True`, `False`, which Django reads as Python's.
    Const(Option<bool>),
    Var(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub name: String,
    pub arg: Option<Operand>,
}

/// `operand|filter:arg|...`
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub operand: Operand,
    pub filters: Vec<Filter>,
}

/// An `{% if %}` condition, by Django's precedence.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Value(Expr),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Compare(Box<Cond>, CompareOp, Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Is,
    IsNot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Print(Expr),
    If(Vec<(Cond, Vec<Node>)>, Vec<Node>),
    For {
        names: Vec<String>,
        seq: Expr,
        reversed: bool,
        body: Vec<Node>,
        empty: Vec<Node>,
    },
    With(Vec<(String, Expr)>, Vec<Node>),
    Now {
        format: String,
        into: Option<String>,
    },
    FirstOf(Vec<Expr>),
    Autoescape(bool, Vec<Node>),
    Spaceless(Vec<Node>),
}

enum Token {
    Text(String),
    Var(String, usize),
    Block(String, usize),
}

/// The tokens of `source`, with the line each tag starts on.
fn tokens(source: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut verbatim: Option<String> = None;
    let mut rest = source;
    let mut line = 1;
    while !rest.is_empty() {
        let Some(start) = rest.find(['{']) else {
            text.push_str(rest);
            break;
        };
        let (before, at) = rest.split_at(start);
        text.push_str(before);
        line += before.matches('\n').count();
        let closer = match at.get(..2) {
            Some("{{") => Some("}}"),
            Some("{%") => Some("%}"),
            Some("{#") => Some("#}"),
            _ => None,
        };
        // A tag ends on the line it starts on (Django's `.` stops at a
        // line break); otherwise its opener is text.
        let end = closer.and_then(|c| {
            let line_end = at.find('\n').unwrap_or(at.len());
            at[2..line_end].find(c).map(|i| i + 2)
        });
        let (Some(closer), Some(end)) = (closer, end) else {
            text.push('{');
            rest = &at[1..];
            continue;
        };
        let inner = at[2..end].trim();
        let whole = &at[..end + 2];
        rest = &at[end + 2..];
        if let Some(ending) = &verbatim {
            if closer == "%}" && inner == ending {
                verbatim = None;
            } else {
                text.push_str(whole);
            }
            continue;
        }
        if !text.is_empty() {
            out.push(Token::Text(std::mem::take(&mut text)));
        }
        match closer {
            "}}" => out.push(Token::Var(inner.to_string(), line)),
            "%}" => {
                if inner == "verbatim" || inner.starts_with("verbatim ") {
                    verbatim = Some(format!("end{inner}"));
                } else {
                    out.push(Token::Block(inner.to_string(), line));
                }
            }
            _ => {}
        }
    }
    if !text.is_empty() {
        out.push(Token::Text(text));
    }
    out
}

/// Splits a tag's contents on spaces outside quotes (Django's
/// `smart_split`, as tags read their bits).
fn bits(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn string_literal(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if !(q == '"' || q == '\'') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    // Django's `unescape_string_literal`: \<quote> and \\, nothing else.
    let inner = &s[1..s.len() - 1];
    Some(
        inner
            .replace(&format!("\\{q}"), &q.to_string())
            .replace("\\\\", "\\"),
    )
}

/// One operand as Django's `Variable` reads it.
fn operand(s: &str) -> Result<Operand, String> {
    if let Some(lit) = string_literal(s) {
        return Ok(Operand::Str(lit));
    }
    match s {
        "None" => return Ok(Operand::Const(None)),
        "True" => return Ok(Operand::Const(Some(true))),
        "False" => return Ok(Operand::Const(Some(false))),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Operand::Int(i));
    }
    if s.contains(['.', 'e', 'E'])
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-')
        && let Ok(f) = s.parse::<f64>()
    {
        if s.ends_with('.') {
            return Err(format!(
                "Variables and attributes may not end in a dot: {s}"
            ));
        }
        return Ok(Operand::Float(f));
    }
    if s.is_empty() {
        return Err("Empty variable".to_string());
    }
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    for p in &parts {
        if p.starts_with('_') {
            return Err(format!(
                "Variables and attributes may not begin with underscores: '{s}'"
            ));
        }
        if p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("Could not parse the remainder: '{s}'"));
        }
    }
    Ok(Operand::Var(parts))
}

/// Reads one quoted string or bare word from the start of `s`; returns it
/// and the rest.
fn take_atom(s: &str) -> (&str, &str) {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, q)) if q == '"' || q == '\'' => {
            let mut escaped = false;
            for (i, c) in chars {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    return s.split_at(i + 1);
                }
            }
            (s, "")
        }
        _ => {
            let end = s.find([':', '|', ' ']).unwrap_or(s.len());
            s.split_at(end)
        }
    }
}

/// `operand|filter:arg|filter`, as Django's `FilterExpression` reads it.
pub fn expr(s: &str) -> Result<Expr, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("Empty variable tag".to_string());
    }
    let (first, mut rest) = take_atom(s);
    let first = operand(first)?;
    let mut filters = Vec::new();
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix('|') else {
            return Err(format!(
                "Could not parse the remainder: '{rest}' from '{s}'"
            ));
        };
        let name_end = after.find([':', '|']).unwrap_or(after.len());
        let name = &after[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!(
                "Could not parse the remainder: '{rest}' from '{s}'"
            ));
        }
        if !filters::known(name) {
            return Err(format!("Invalid filter: '{name}'"));
        }
        rest = &after[name_end..];
        let arg = match rest.strip_prefix(':') {
            Some(a) => {
                let (atom, r) = take_atom(a);
                rest = r;
                Some(operand(atom)?)
            }
            None => None,
        };
        filters::check_arity(name, arg.is_some())?;
        filters.push(Filter {
            name: name.to_string(),
            arg,
        });
    }
    Ok(Expr {
        operand: first,
        filters,
    })
}

/// Parses `{% if %}` bits by Django's precedence: or < and < not <
/// comparisons.
struct CondParser<'a> {
    bits: &'a [String],
    pos: usize,
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&str> {
        self.bits.get(self.pos).map(String::as_str)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut left = self.and()?;
        while self.peek() == Some("or") {
            self.pos += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut left = self.not()?;
        while self.peek() == Some("and") {
            self.pos += 1;
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, String> {
        if self.peek() == Some("not") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Cond, String> {
        let left = self.value()?;
        let op = match self.peek() {
            Some("==") => CompareOp::Eq,
            Some("!=") => CompareOp::Ne,
            Some("<") => CompareOp::Lt,
            Some("<=") => CompareOp::Le,
            Some(">") => CompareOp::Gt,
            Some(">=") => CompareOp::Ge,
            Some("in") => CompareOp::In,
            Some("is") if self.bits.get(self.pos + 1).map(String::as_str) == Some("not") => {
                self.pos += 1;
                CompareOp::IsNot
            }
            Some("is") => CompareOp::Is,
            Some("not") if self.bits.get(self.pos + 1).map(String::as_str) == Some("in") => {
                self.pos += 1;
                CompareOp::NotIn
            }
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.value()?;
        Ok(Cond::Compare(Box::new(left), op, Box::new(right)))
    }

    fn value(&mut self) -> Result<Cond, String> {
        match self.peek() {
            None => Err("Unexpected end of expression in if tag.".to_string()),
            Some(b @ ("and" | "or" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "is")) => {
                Err(format!("Not expecting '{b}' in this position in if tag."))
            }
            Some(b) => {
                let e = expr(b)?;
                self.pos += 1;
                Ok(Cond::Value(e))
            }
        }
    }
}

fn condition(bits: &[String]) -> Result<Cond, String> {
    let mut p = CondParser { bits, pos: 0 };
    let c = p.or()?;
    match p.peek() {
        None => Ok(c),
        Some(b) => Err(format!("Unused '{b}' at end of if expression.")),
    }
}

/// Where a block ended: the tag that ended it and its bits.
struct Parser {
    tokens: std::vec::IntoIter<Token>,
}

impl Parser {
    /// Nodes up to one of `until` (returned with its bits), or to the end
    /// when `until` is empty.
    fn nodes(&mut self, until: &[&str]) -> Result<(Vec<Node>, Option<Vec<String>>), String> {
        let mut nodes = Vec::new();
        while let Some(token) = self.tokens.next() {
            match token {
                Token::Text(t) => nodes.push(Node::Text(t)),
                Token::Var(v, line) => {
                    nodes.push(Node::Print(expr(&v).map_err(|e| at(e, line))?));
                }
                Token::Block(b, line) => {
                    let bits = bits(&b);
                    let Some(name) = bits.first().cloned() else {
                        return Err(at("Empty block tag".to_string(), line));
                    };
                    if until.contains(&name.as_str()) {
                        return Ok((nodes, Some(bits)));
                    }
                    nodes.push(self.tag(&name, &bits, line).map_err(|e| at(e, line))?);
                }
            }
        }
        if until.is_empty() {
            Ok((nodes, None))
        } else {
            Err(format!(
                "Unclosed tag: expected one of {}",
                until
                    .iter()
                    .map(|u| format!("'{u}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    fn tag(&mut self, name: &str, bits: &[String], line: usize) -> Result<Node, String> {
        let args = &bits[1..];
        match name {
            "if" => {
                let mut branches = Vec::new();
                let mut cond = condition(args)?;
                loop {
                    let (body, end) = self.nodes(&["elif", "else", "endif"])?;
                    let end = end.unwrap_or_default();
                    branches.push((cond, body));
                    match end.first().map(String::as_str) {
                        Some("elif") => cond = condition(&end[1..])?,
                        Some("else") => {
                            let (otherwise, _) = self.nodes(&["endif"])?;
                            return Ok(Node::If(branches, otherwise));
                        }
                        _ => return Ok(Node::If(branches, Vec::new())),
                    }
                }
            }
            "for" => {
                let in_at = args
                    .iter()
                    .position(|b| b == "in")
                    .ok_or("'for' statements should use the format 'for x in y'")?;
                let names: Vec<String> = args[..in_at]
                    .join(" ")
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .collect();
                if names.iter().any(|n| n.is_empty() || n.contains(' ')) {
                    return Err(format!(
                        "'for' tag received an invalid argument: {}",
                        args.join(" ")
                    ));
                }
                let mut rest = &args[in_at + 1..];
                let reversed = rest.last().map(String::as_str) == Some("reversed");
                if reversed {
                    rest = &rest[..rest.len() - 1];
                }
                if rest.len() != 1 {
                    return Err("'for' statements should use the format 'for x in y'".to_string());
                }
                let seq = expr(&rest[0])?;
                let (body, end) = self.nodes(&["empty", "endfor"])?;
                let empty = match end.as_ref().and_then(|e| e.first()).map(String::as_str) {
                    Some("empty") => self.nodes(&["endfor"])?.0,
                    _ => Vec::new(),
                };
                Ok(Node::For {
                    names,
                    seq,
                    reversed,
                    body,
                    empty,
                })
            }
            "with" => {
                let mut pairs = Vec::new();
                if args.len() == 3 && args[1] == "as" {
                    pairs.push((args[2].clone(), expr(&args[0])?));
                } else {
                    for a in args {
                        let Some((k, v)) = a.split_once('=') else {
                            return Err("'with' expected at least one variable assignment".into());
                        };
                        pairs.push((k.to_string(), expr(v)?));
                    }
                }
                if pairs.is_empty() {
                    return Err("'with' expected at least one variable assignment".into());
                }
                let (body, _) = self.nodes(&["endwith"])?;
                Ok(Node::With(pairs, body))
            }
            "now" => {
                let (format, into) = match args {
                    [f] => (f, None),
                    [f, as_, var] if as_ == "as" => (f, Some(var.clone())),
                    _ => return Err("'now' statement takes one argument".into()),
                };
                // Django takes what is between the quotes as it is.
                let quoted = format.len() >= 2
                    && (format.starts_with('"') && format.ends_with('"')
                        || format.starts_with('\'') && format.ends_with('\''));
                if !quoted {
                    return Err("'now' statement takes one argument".into());
                }
                let format = format[1..format.len() - 1].to_string();
                Ok(Node::Now { format, into })
            }
            "firstof" => {
                if args.is_empty() {
                    return Err("'firstof' statement requires at least one argument".into());
                }
                Ok(Node::FirstOf(
                    args.iter().map(|a| expr(a)).collect::<Result<_, _>>()?,
                ))
            }
            "comment" => {
                self.nodes(&["endcomment"])?;
                Ok(Node::Text(String::new()))
            }
            "autoescape" => {
                let on = match args {
                    [a] if a == "on" => true,
                    [a] if a == "off" => false,
                    _ => return Err("'autoescape' argument should be 'on' or 'off'".into()),
                };
                let (body, _) = self.nodes(&["endautoescape"])?;
                Ok(Node::Autoescape(on, body))
            }
            "spaceless" => {
                let (body, _) = self.nodes(&["endspaceless"])?;
                Ok(Node::Spaceless(body))
            }
            // Django's own libraries load (their tags are not known here,
            // so a template using one is refused by name); others do not.
            "load" => {
                const BUNDLED: [&str; 5] = ["static", "i18n", "l10n", "tz", "cache"];
                match args.iter().find(|a| !BUNDLED.contains(&a.as_str())) {
                    None if !args.is_empty() => Ok(Node::Text(String::new())),
                    None => Err("'load' takes at least one argument".into()),
                    Some(lib) => Err(format!("'{lib}' is not a registered tag library.")),
                }
            }
            "templatetag" => {
                let text = match args.first().map(String::as_str) {
                    Some("openblock") => "{%",
                    Some("closeblock") => "%}",
                    Some("openvariable") => "{{",
                    Some("closevariable") => "}}",
                    Some("openbrace") => "{",
                    Some("closebrace") => "}",
                    Some("opencomment") => "{#",
                    Some("closecomment") => "#}",
                    _ => return Err("Invalid templatetag argument".into()),
                };
                Ok(Node::Text(text.to_string()))
            }
            other => Err(format!(
                "Invalid block tag on line {line}: '{other}'. Did you forget to register or load this tag?"
            )),
        }
    }
}

fn at(message: String, line: usize) -> String {
    if message.contains("on line") {
        message
    } else {
        format!("{message} (line {line})")
    }
}

/// The nodes of a whole template.
pub fn parse(source: &str) -> Result<Vec<Node>, String> {
    let mut p = Parser {
        tokens: tokens(source).into_iter(),
    };
    Ok(p.nodes(&[])?.0)
}
