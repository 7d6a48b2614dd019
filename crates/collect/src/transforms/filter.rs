//! The `filter` transform's expression language, parsed once at config load.
//!
//! ```text
//! expr    := or
//! or      := and (("or" | "||") and)*
//! and     := not (("and" | "&&") not)*
//! not     := ("not" | "!") not | compare
//! compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
//! operand := path | literal | "exists" "(" path ")" | "(" expr ")"
//! path    := "." | ("." NAME | "." "\"" QUOTED "\"" | "[" INDEX "]")+
//! literal := "string" | number | true | false | null
//! ```
//!
//! A path reads the JSON payload: `.a.b[0]`; `.` alone is the whole payload
//! (a text payload is a string). A missing field compares as `null`.
//! `==`/`!=` compare numbers by value and other values exactly; `<`, `<=`,
//! `>`, `>=` compare two numbers or two strings, and are false for anything
//! else. An operand on its own is true only when it is the boolean `true`.

use std::fmt;

use serde_json::Value;

/// A parse error, with the column (1-based, in characters) where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// One step of a path.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    Path(Vec<Step>),
    Literal(Value),
    Exists(Vec<Step>),
    Group(Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Operand, Op, Operand),
    Is(Operand),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Dot,
    Name(String),
    Str(String),
    Num(f64, String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    Op(Op),
    AndAnd,
    OrOr,
    Bang,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Dot => "`.`".into(),
        Tok::Name(n) => format!("`{n}`"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Num(_, s) => format!("`{s}`"),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Op(op) => format!(
            "`{}`",
            match op {
                Op::Eq => "==",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
            }
        ),
        Tok::AndAnd => "`&&`".into(),
        Tok::OrOr => "`||`".into(),
        Tok::Bang => "`!`".into(),
        Tok::End => "the end".into(),
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        column,
        message: message.into(),
    })
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '.' => out.push((Tok::Dot, col)),
            '[' => out.push((Tok::LBracket, col)),
            ']' => out.push((Tok::RBracket, col)),
            '(' => out.push((Tok::LParen, col)),
            ')' => out.push((Tok::RParen, col)),
            '=' if next == Some('=') => {
                out.push((Tok::Op(Op::Eq), col));
                i += 1;
            }
            '=' => return err(col, "`=` is not an operator; compare with `==`"),
            '!' if next == Some('=') => {
                out.push((Tok::Op(Op::Ne), col));
                i += 1;
            }
            '!' => out.push((Tok::Bang, col)),
            '<' | '>' => {
                let eq = next == Some('=');
                let op = match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                };
                out.push((Tok::Op(op), col));
                if eq {
                    i += 1;
                }
            }
            '&' if next == Some('&') => {
                out.push((Tok::AndAnd, col));
                i += 1;
            }
            '|' if next == Some('|') => {
                out.push((Tok::OrOr, col));
                i += 1;
            }
            '"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return err(col, "string not closed: a `\"` is missing"),
                        Some('"') => break,
                        Some('\\') => {
                            let e = match chars.get(j + 1) {
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                other => {
                                    return err(
                                        j + 1,
                                        format!(
                                            "unknown escape `\\{}`; use \\\" \\\\ \\n \\t \\r",
                                            other.map(|c| c.to_string()).unwrap_or_default()
                                        ),
                                    );
                                }
                            };
                            s.push(e);
                            j += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            j += 1;
                        }
                    }
                }
                out.push((Tok::Str(s), col));
                i = j;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || chars[j] == '.'
                        || ((chars[j] == '-' || chars[j] == '+')
                            && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                let Ok(n) = text.parse::<f64>() else {
                    return err(col, format!("`{text}` is not a number"));
                };
                if !n.is_finite() {
                    return err(col, format!("`{text}` is not a finite number"));
                }
                out.push((Tok::Num(n, text), col));
                i = j;
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '-')
                {
                    j += 1;
                }
                out.push((Tok::Name(chars[i..j].iter().collect()), col));
                i = j;
                continue;
            }
            other => return err(col, format!("unexpected character `{other}`")),
        }
        i += 1;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }
    fn col(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == w)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.is_word("or") || *self.peek() == Tok::OrOr {
            self.bump();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.is_word("and") || *self.peek() == Tok::AndAnd {
            self.bump();
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.is_word("not") || *self.peek() == Tok::Bang {
            self.bump();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        if let Tok::Op(op) = *self.peek() {
            self.bump();
            let right = self.operand()?;
            return Ok(Expr::Compare(left, op, right));
        }
        Ok(Expr::Is(left))
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let col = self.col();
        match self.bump() {
            Tok::Dot | Tok::LBracket => {
                self.at -= 1;
                Ok(Operand::Path(self.path()?))
            }
            Tok::Str(s) => Ok(Operand::Literal(Value::String(s))),
            Tok::Num(n, text) => Ok(Operand::Literal(
                // Integers stay integers, so `== 3` matches 3 exactly.
                text.parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(n)),
            )),
            Tok::LParen => {
                let e = self.or()?;
                self.expect(Tok::RParen, "`)` to close the `(`")?;
                Ok(Operand::Group(Box::new(e)))
            }
            Tok::Name(n) => match n.as_str() {
                "true" => Ok(Operand::Literal(Value::Bool(true))),
                "false" => Ok(Operand::Literal(Value::Bool(false))),
                "null" => Ok(Operand::Literal(Value::Null)),
                "exists" => {
                    self.expect(Tok::LParen, "`(` after exists")?;
                    let at = self.col();
                    if !matches!(self.peek(), Tok::Dot | Tok::LBracket) {
                        return err(at, "exists(…) takes a field path such as .name");
                    }
                    let p = self.path()?;
                    self.expect(Tok::RParen, "`)` to close exists(")?;
                    Ok(Operand::Exists(p))
                }
                "and" | "or" | "not" => err(col, format!("`{n}` needs an operand before it")),
                other => err(
                    col,
                    format!(
                        "unknown word `{other}`; a field is written .{other}, a string \"{other}\""
                    ),
                ),
            },
            t => err(
                col,
                format!(
                    "expected a field (.name), a value or `(`, found {}",
                    describe(&t)
                ),
            ),
        }
    }

    fn path(&mut self) -> Result<Vec<Step>, ParseError> {
        let mut steps = Vec::new();
        let mut any = false;
        loop {
            match self.peek() {
                Tok::Dot => {
                    let col = self.col();
                    self.bump();
                    any = true;
                    // A name right after the dot (no space), or a quoted one.
                    let next_col = self.col();
                    match self.peek().clone() {
                        Tok::Name(n) if next_col == col + 1 => {
                            self.bump();
                            steps.push(Step::Key(n));
                        }
                        Tok::Str(s) if next_col == col + 1 => {
                            self.bump();
                            steps.push(Step::Key(s));
                        }
                        _ if steps.is_empty() => {
                            // `.` alone: the whole payload.
                        }
                        _ => return err(next_col, "a field name must follow `.`"),
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    any = true;
                    let col = self.col();
                    match self.bump() {
                        Tok::Num(n, _) if n >= 0.0 && n.fract() == 0.0 => {
                            steps.push(Step::Index(n as usize));
                        }
                        Tok::Str(s) => steps.push(Step::Key(s)),
                        _ => return err(col, "`[` takes an index (0, 1, …) or a quoted name"),
                    }
                    self.expect(Tok::RBracket, "`]`")?;
                }
                _ => break,
            }
        }
        if !any {
            return err(self.col(), "expected a field path such as .name");
        }
        Ok(steps)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            err(
                self.col(),
                format!("expected {what}, found {}", describe(self.peek())),
            )
        }
    }
}

impl Expr {
    /// Parse a condition; the error names the column.
    pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
        let toks = lex(src)?;
        if toks.len() == 1 {
            return err(1, "empty condition");
        }
        let mut p = Parser { toks, at: 0 };
        let e = p.or()?;
        if *p.peek() != Tok::End {
            return err(
                p.col(),
                format!(
                    "expected `and`, `or`, a comparison or the end, found {}",
                    describe(p.peek())
                ),
            );
        }
        Ok(e)
    }

    /// Whether the condition holds for `payload`.
    pub(crate) fn eval(&self, payload: &Value) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(payload) || b.eval(payload),
            Expr::And(a, b) => a.eval(payload) && b.eval(payload),
            Expr::Not(a) => !a.eval(payload),
            Expr::Is(o) => matches!(value(o, payload), Some(Value::Bool(true))),
            Expr::Compare(a, op, b) => {
                let (a, b) = (value(a, payload), value(b, payload));
                let a = a.unwrap_or(Value::Null);
                let b = b.unwrap_or(Value::Null);
                match op {
                    Op::Eq => equal(&a, &b),
                    Op::Ne => !equal(&a, &b),
                    _ => match order(&a, &b) {
                        Some(o) => match op {
                            Op::Lt => o.is_lt(),
                            Op::Le => o.is_le(),
                            Op::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        },
                        None => false,
                    },
                }
            }
        }
    }
}

fn lookup<'a>(steps: &[Step], payload: &'a Value) -> Option<&'a Value> {
    let mut v = payload;
    for s in steps {
        v = match (s, v) {
            (Step::Key(k), Value::Object(o)) => o.get(k)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

fn value(o: &Operand, payload: &Value) -> Option<Value> {
    match o {
        Operand::Path(p) => lookup(p, payload).cloned(),
        Operand::Literal(v) => Some(v.clone()),
        Operand::Exists(p) => Some(Value::Bool(lookup(p, payload).is_some())),
        Operand::Group(e) => Some(Value::Bool(e.eval(payload))),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(src: &str, v: Value) -> bool {
        Expr::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&v)
    }

    #[test]
    fn comparisons_and_logic() {
        let v = json!({"level": "error", "status": 503, "ok": false, "tags": ["a", "b"], "n": {"x": 1.5}, "odd key": 1});
        assert!(holds(r#".level == "error""#, v.clone()));
        assert!(!holds(r#".level != "error""#, v.clone()));
        assert!(holds(".status >= 500", v.clone()));
        assert!(!holds(".status < 500", v.clone()));
        assert!(holds(".status == 503.0", v.clone()));
        assert!(holds(r#".level == "error" and .status >= 500"#, v.clone()));
        assert!(holds(r#".level == "info" or .status > 502"#, v.clone()));
        assert!(holds("not .ok", v.clone()));
        assert!(holds("!(.ok == true) && exists(.status)", v.clone()));
        assert!(!holds("exists(.missing)", v.clone()));
        assert!(holds(".missing == null", v.clone()));
        assert!(holds(r#".tags[1] == "b""#, v.clone()));
        assert!(holds(".n.x > 1 and .n.x < 2", v.clone()));
        assert!(holds(r#"."odd key" == 1"#, v.clone()));
        assert!(holds(r#".["odd key"] == 1"#, v.clone()));
        assert!(
            !holds(r#".status > "a""#, v.clone()),
            "mixed types never order"
        );
        assert!(holds(r#". == "plain text""#, json!("plain text")));
        // `and` binds tighter than `or`.
        assert!(holds("false and false or true", v.clone()));
        assert!(!holds("false and (false or true)", v));
        assert!(holds(".a == -2e3", json!({"a": -2000})));
    }

    #[test]
    fn errors_name_the_column() {
        let e = |src: &str| Expr::parse(src).unwrap_err();
        assert_eq!(e(".level = \"x\"").column, 8);
        assert!(e(".level = \"x\"").message.contains("=="));
        assert_eq!(e(".a == \"x").column, 7);
        assert_eq!(e(".a == 1 and").column, 12);
        assert_eq!(e("level == 1").column, 1);
        assert!(e("level == 1").message.contains(".level"));
        assert_eq!(e("exists(level)").column, 8);
        assert_eq!(e("(.a == 1").column, 9);
        assert_eq!(e(".a == 1 .b").column, 9);
        assert_eq!(e(".a # 1").column, 4);
        assert_eq!(e("").column, 1);
        assert_eq!(e(".a[x]").column, 4);
        assert_eq!(e(".a.").column, 4);
    }
}
