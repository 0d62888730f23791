//! Rendering nodes with a context, as Django's `Template.render(Context)`
//! does: a variable that does not resolve is `""` (its filters still
//! apply) and false in `{% if %}`; printed values are escaped unless
//! safe, with autoescape on by default; a callable attribute of a string
//! (`upper`, `split`, ...) is called.

use time::OffsetDateTime;

use super::date;
use super::filters;
use super::parse::{CompareOp, Cond, Expr, Node, Operand};
use super::value::{V, escape};

/// Steps (nodes, loop turns) one render may take, and bytes it may write.
const FUEL: u64 = 2_000_000;
const MAX_OUTPUT: usize = 64 << 20;

/// What ends a render early: its fuel, or an error Django raises while
/// rendering (a filter argument that does not resolve, a loop over a
/// number, an unpacking that does not fit).
pub enum Stop {
    OutOfFuel,
    Failed(String),
}

pub struct Renderer {
    frames: Vec<Vec<(String, V)>>,
    now: OffsetDateTime,
    autoescape: bool,
    fuel: u64,
}

impl Renderer {
    pub fn new(ctx: &serde_json::Value, now: OffsetDateTime) -> Self {
        let base = match V::from_json(ctx) {
            V::Map(m) => m,
            _ => Vec::new(),
        };
        Self {
            frames: vec![base],
            now,
            autoescape: true,
            fuel: FUEL,
        }
    }

    fn lookup(&self, path: &[String]) -> Option<V> {
        let (first, rest) = path.split_first()?;
        let mut current = self.frames.iter().rev().find_map(|f| {
            f.iter()
                .rev()
                .find(|(k, _)| k == first)
                .map(|(_, v)| v.clone())
        })?;
        for part in rest {
            current = attribute(&current, part)?;
        }
        Some(current)
    }

    fn operand(&self, o: &Operand) -> Option<V> {
        match o {
            // Literals are safe: Django marks them so.
            Operand::Str(s) => Some(V::safe(s.clone())),
            Operand::Int(i) => Some(V::Int(*i)),
            Operand::Float(f) => Some(V::Float(*f)),
            Operand::Const(None) => Some(V::None),
            Operand::Const(Some(b)) => Some(V::Bool(*b)),
            Operand::Var(path) => self.lookup(path),
        }
    }

    /// An expression's value; `None` when its variable does not resolve
    /// (the caller picks `""` or `None`, as Django does).
    /// Django raises for a filter argument that does not resolve.
    fn expr(&self, e: &Expr, missing: V) -> Result<V, Stop> {
        let mut value = self.operand(&e.operand).unwrap_or(missing);
        for f in &e.filters {
            let arg = match &f.arg {
                Some(a) => Some(self.operand(a).ok_or_else(|| {
                    let name = match a {
                        Operand::Var(path) => path.join("."),
                        _ => String::new(),
                    };
                    Stop::Failed(format!("Failed lookup for key [{name}]"))
                })?),
                None => None,
            };
            value = filters::apply(&f.name, value, arg, self.autoescape);
        }
        Ok(value)
    }

    fn show(&self, v: &V) -> String {
        if self.autoescape && !v.is_safe() {
            escape(&v.to_print())
        } else {
            v.to_print()
        }
    }

    fn cond(&self, c: &Cond) -> Result<V, Stop> {
        Ok(match c {
            // An `if` swallows what its operands raise: false.
            Cond::Value(e) => self.expr(e, V::None).unwrap_or(V::None),
            Cond::Not(c) => V::Bool(!self.cond(c)?.truthy()),
            Cond::And(a, b) => {
                let left = self.cond(a)?;
                if left.truthy() { self.cond(b)? } else { left }
            }
            Cond::Or(a, b) => {
                let left = self.cond(a)?;
                if left.truthy() { left } else { self.cond(b)? }
            }
            Cond::Compare(a, op, b) => {
                let (x, y) = (self.cond(a)?, self.cond(b)?);
                use std::cmp::Ordering::*;
                V::Bool(match op {
                    CompareOp::Eq => x.py_eq(&y),
                    CompareOp::Ne => !x.py_eq(&y),
                    CompareOp::Lt => x.py_cmp(&y) == Some(Less),
                    CompareOp::Le => matches!(x.py_cmp(&y), Some(Less | Equal)),
                    CompareOp::Gt => x.py_cmp(&y) == Some(Greater),
                    CompareOp::Ge => matches!(x.py_cmp(&y), Some(Greater | Equal)),
                    CompareOp::In => y.contains(&x).unwrap_or(false),
                    CompareOp::NotIn => !y.contains(&x).unwrap_or(true),
                    // `is` on what a template has: None, True and False
                    // are the same objects; other values only themselves.
                    CompareOp::Is => is(&x, &y),
                    CompareOp::IsNot => !is(&x, &y),
                })
            }
        })
    }

    fn burn(&mut self, out: &str) -> Result<(), Stop> {
        if self.fuel == 0 || out.len() > MAX_OUTPUT {
            return Err(Stop::OutOfFuel);
        }
        self.fuel -= 1;
        Ok(())
    }

    pub fn nodes(&mut self, nodes: &[Node], out: &mut String) -> Result<(), Stop> {
        for node in nodes {
            self.burn(out)?;
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Print(e) => {
                    let v = self.expr(e, V::text(""))?;
                    out.push_str(&self.show(&v));
                }
                Node::If(branches, otherwise) => {
                    let mut chosen = otherwise.as_slice();
                    for (c, body) in branches {
                        if self.cond(c)?.truthy() {
                            chosen = body;
                            break;
                        }
                    }
                    self.nodes(chosen, out)?;
                }
                Node::For {
                    names,
                    seq,
                    reversed,
                    body,
                    empty,
                } => self.for_loop(names, seq, *reversed, body, empty, out)?,
                Node::With(pairs, body) => {
                    let frame = pairs
                        .iter()
                        .map(|(k, e)| Ok((k.clone(), self.expr(e, V::text(""))?)))
                        .collect::<Result<_, Stop>>()?;
                    self.frames.push(frame);
                    let r = self.nodes(body, out);
                    self.frames.pop();
                    r?;
                }
                Node::Now { format, into } => {
                    let text = date::format(format, self.now);
                    match into {
                        Some(name) => {
                            if let Some(f) = self.frames.last_mut() {
                                f.push((name.clone(), V::text(text)));
                            }
                        }
                        None => out.push_str(&self.show(&V::text(text))),
                    }
                }
                Node::FirstOf(exprs) => {
                    for e in exprs {
                        let v = self.expr(e, V::None)?;
                        if v.truthy() {
                            out.push_str(&self.show(&v));
                            break;
                        }
                    }
                }
                Node::Autoescape(on, body) => {
                    let before = self.autoescape;
                    self.autoescape = *on;
                    let r = self.nodes(body, out);
                    self.autoescape = before;
                    r?;
                }
                Node::Spaceless(body) => {
                    let mut inner = String::new();
                    self.nodes(body, &mut inner)?;
                    out.push_str(&spaceless(&inner));
                }
            }
        }
        Ok(())
    }

    fn for_loop(
        &mut self,
        names: &[String],
        seq: &Expr,
        reversed: bool,
        body: &[Node],
        empty: &[Node],
        out: &mut String,
    ) -> Result<(), Stop> {
        // A missing sequence (or None) is empty; a number is Python's
        // TypeError.
        let mut items = match self.expr(seq, V::None)? {
            V::None => Vec::new(),
            v => v.items().ok_or_else(|| {
                Stop::Failed(format!(
                    "TypeError: '{}' object is not iterable",
                    v.type_name()
                ))
            })?,
        };
        if reversed {
            items.reverse();
        }
        if items.is_empty() {
            return self.nodes(empty, out);
        }
        let parent = self
            .lookup(&["forloop".to_string()])
            .unwrap_or(V::Map(Vec::new()));
        let n = items.len() as i64;
        for (i, item) in items.into_iter().enumerate() {
            self.burn(out)?;
            let i = i as i64;
            let forloop = V::Map(vec![
                ("parentloop".into(), parent.clone()),
                ("counter0".into(), V::Int(i)),
                ("counter".into(), V::Int(i + 1)),
                ("revcounter".into(), V::Int(n - i)),
                ("revcounter0".into(), V::Int(n - i - 1)),
                ("first".into(), V::Bool(i == 0)),
                ("last".into(), V::Bool(i == n - 1)),
            ]);
            let mut frame = vec![("forloop".to_string(), forloop)];
            if names.len() == 1 {
                frame.push((names[0].clone(), item));
            } else {
                // Unpacking: Django refuses a length that does not fit.
                let parts = item.items().unwrap_or_default();
                if parts.len() != names.len() {
                    return Err(Stop::Failed(format!(
                        "ValueError: Need {} values to unpack in for loop; got {}.",
                        names.len(),
                        parts.len()
                    )));
                }
                for (name, part) in names.iter().zip(parts) {
                    frame.push((name.clone(), part));
                }
            }
            self.frames.push(frame);
            let r = self.nodes(body, out);
            self.frames.pop();
            r?;
        }
        Ok(())
    }
}

fn is(x: &V, y: &V) -> bool {
    match (x, y) {
        (V::None, V::None) => true,
        (V::Bool(a), V::Bool(b)) => a == b,
        _ => false,
    }
}

/// An attribute or key of a value, as Django's `Variable._resolve_lookup`
/// tries them: a key, a method of a dict or a string called without
/// arguments, an index.
fn attribute(v: &V, part: &str) -> Option<V> {
    match v {
        V::Map(m) => match m.iter().find(|(k, _)| k == part) {
            Some((_, found)) => Some(found.clone()),
            None => match part {
                "items" => Some(V::View(
                    "dict_items",
                    m.iter()
                        .map(|(k, v)| V::Tuple(vec![V::text(k.clone()), v.clone()]))
                        .collect(),
                )),
                "keys" => Some(V::View(
                    "dict_keys",
                    m.iter().map(|(k, _)| V::text(k.clone())).collect(),
                )),
                "values" => Some(V::View(
                    "dict_values",
                    m.iter().map(|(_, v)| v.clone()).collect(),
                )),
                _ => None,
            },
        },
        V::List(l) | V::Tuple(l) => part.parse::<usize>().ok().and_then(|i| l.get(i).cloned()),
        V::Str(s, _) => match part {
            "upper" => Some(V::text(s.to_uppercase())),
            "lower" => Some(V::text(s.to_lowercase())),
            "strip" => Some(V::text(s.trim())),
            "split" => Some(V::List(s.split_whitespace().map(V::text).collect())),
            "capitalize" => {
                let mut chars = s.chars();
                Some(V::text(match chars.next() {
                    Some(c) => c
                        .to_uppercase()
                        .chain(chars.flat_map(char::to_lowercase))
                        .collect(),
                    None => String::new(),
                }))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `{% spaceless %}`: whitespace between tags removed, and the ends
/// stripped.
fn spaceless(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s.trim();
    while let Some(i) = rest.find('>') {
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        let trimmed = after.trim_start();
        if trimmed.starts_with('<') {
            rest = trimmed;
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
