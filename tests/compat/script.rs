//! Splits a psql script into the statements psql would send, as psql does: a statement ends at a
//! semicolon outside quotes, comments and parentheses; `\set`/`\getenv` variables are
//! interpolated (`:name`, `:'name'`); other backslash commands are display settings and are
//! skipped; `COPY ... FROM STDIN` takes the data lines that follow, up to `\.`; and
//! `COPY ... FROM 'file'` reads the file on the client and sends it as `FROM STDIN`, so that
//! neither server needs to see the script's directory.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL sent to both servers.
    pub sql: String,
    /// Line in the script where the statement starts (1-based).
    pub line: usize,
    /// For COPY ... FROM STDIN: the data sent after the statement.
    pub copy_data: Option<Vec<u8>>,
}

pub fn split(script: &str, env: &HashMap<&str, String>) -> Vec<Statement> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut statements = Vec::new();
    let mut buf = String::new();
    let mut start_line = 0;
    let lines: Vec<&str> = script.split_inclusive('\n').collect();
    let mut state = State::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        if state.is_normal() && trimmed.starts_with('\\') {
            meta_command(trimmed.trim_end(), &mut vars, env);
            continue;
        }
        let mut chars = line.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            if buf.trim().is_empty()
                && !c.is_whitespace()
                && state.is_normal()
                && c != ';'
                && !(c == '-' && line[pos..].starts_with("--"))
            {
                start_line = i;
            }
            match &mut state.mode {
                Mode::Normal => match c {
                    '-' if line[pos..].starts_with("--") => {
                        // A comment runs to the end of the line; psql drops it when it stands
                        // alone before a statement.
                        if !buf.trim().is_empty() {
                            buf.push_str(line[pos..].trim_end_matches('\n'));
                        }
                        break;
                    }
                    '/' if line[pos..].starts_with("/*") => {
                        chars.next();
                        state.mode = Mode::Block(1);
                        buf.push_str("/*");
                    }
                    '\'' => {
                        let escapes = buf.chars().last().is_some_and(|p| p == 'E' || p == 'e')
                            && !buf
                                .chars()
                                .rev()
                                .nth(1)
                                .is_some_and(|p| p.is_alphanumeric() || p == '_');
                        state.mode = Mode::Single { escapes };
                        buf.push(c);
                    }
                    '"' => {
                        state.mode = Mode::Double;
                        buf.push(c);
                    }
                    '$' => {
                        let rest = &line[pos + 1..];
                        let tag_len = rest
                            .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                            .unwrap_or(rest.len());
                        let prev_ident = buf
                            .chars()
                            .last()
                            .is_some_and(|p| p.is_alphanumeric() || p == '_');
                        if !prev_ident
                            && rest[tag_len..].starts_with('$')
                            && !rest[..tag_len].starts_with(|ch: char| ch.is_ascii_digit())
                        {
                            let tag = format!("${}$", &rest[..tag_len]);
                            for _ in 0..tag_len + 1 {
                                chars.next();
                            }
                            buf.push_str(&tag);
                            state.mode = Mode::Dollar(tag);
                        } else {
                            buf.push(c);
                        }
                    }
                    '(' => {
                        state.parens += 1;
                        buf.push(c);
                    }
                    ')' => {
                        state.parens = state.parens.saturating_sub(1);
                        buf.push(c);
                    }
                    ':' if line[pos..].starts_with(":'")
                        || line[pos + 1..].starts_with(|ch: char| ch.is_alphabetic()) =>
                    {
                        if line[pos..].starts_with("::") || buf.ends_with(':') {
                            buf.push(c);
                            continue;
                        }
                        let quoted = line[pos..].starts_with(":'");
                        let name_start = pos + if quoted { 2 } else { 1 };
                        let name_len = line[name_start..]
                            .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                            .unwrap_or(line.len() - name_start);
                        let name = &line[name_start..name_start + name_len];
                        let closes = !quoted || line[name_start + name_len..].starts_with('\'');
                        match vars.get(name) {
                            Some(value) if closes => {
                                if quoted {
                                    buf.push('\'');
                                    buf.push_str(&value.replace('\'', "''"));
                                    buf.push('\'');
                                } else {
                                    buf.push_str(value);
                                }
                                let skip = name_start + name_len + usize::from(quoted) - pos - 1;
                                for _ in 0..skip {
                                    chars.next();
                                }
                            }
                            _ => buf.push(c),
                        }
                    }
                    ';' if state.parens == 0 => {
                        let sql = buf.trim().to_string();
                        buf.clear();
                        if sql.is_empty() {
                            continue;
                        }
                        let mut statement = Statement {
                            sql,
                            line: start_line,
                            copy_data: None,
                        };
                        if let Some(copy) = copy_from(&statement.sql) {
                            match copy {
                                CopyFrom::Stdin => {
                                    let mut data = Vec::new();
                                    while i < lines.len() {
                                        let l = lines[i];
                                        i += 1;
                                        if l.trim_end() == "\\." {
                                            break;
                                        }
                                        data.extend_from_slice(l.as_bytes());
                                    }
                                    statement.copy_data = Some(data);
                                }
                                CopyFrom::File { path, stdin_sql } => {
                                    let data =
                                        std::fs::read(Path::new(&path)).unwrap_or_else(|e| {
                                            panic!("read {path} for {}: {e}", statement.sql)
                                        });
                                    statement.sql = stdin_sql;
                                    statement.copy_data = Some(data);
                                }
                            }
                        }
                        statements.push(statement);
                        // The rest of the line: a comment or the next statement.
                    }
                    _ => buf.push(c),
                },
                Mode::Single { escapes } => {
                    buf.push(c);
                    if *escapes && c == '\\' {
                        if let Some((_, n)) = chars.next() {
                            buf.push(n);
                        }
                    } else if c == '\'' {
                        if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                            chars.next();
                            buf.push('\'');
                        } else {
                            state.mode = Mode::Normal;
                        }
                    }
                }
                Mode::Double => {
                    buf.push(c);
                    if c == '"' {
                        state.mode = Mode::Normal;
                    }
                }
                Mode::Dollar(tag) => {
                    if line[pos..].starts_with(tag.as_str()) {
                        let n = tag.len();
                        buf.push_str(tag);
                        for _ in 1..n {
                            chars.next();
                        }
                        state.mode = Mode::Normal;
                    } else {
                        buf.push(c);
                    }
                }
                Mode::Block(depth) => {
                    if line[pos..].starts_with("*/") {
                        chars.next();
                        buf.push_str("*/");
                        *depth -= 1;
                        if *depth == 0 {
                            state.mode = Mode::Normal;
                        }
                    } else if line[pos..].starts_with("/*") {
                        chars.next();
                        buf.push_str("/*");
                        *depth += 1;
                    } else {
                        buf.push(c);
                    }
                }
            }
        }
        if !line.ends_with('\n') {
            continue;
        }
        if !buf.is_empty() && !buf.ends_with('\n') {
            buf.push('\n');
        }
    }
    statements
}

#[derive(Default)]
struct State {
    mode: Mode,
    parens: usize,
}

impl State {
    fn is_normal(&self) -> bool {
        matches!(self.mode, Mode::Normal)
    }
}

#[derive(Default)]
enum Mode {
    #[default]
    Normal,
    Single {
        escapes: bool,
    },
    Double,
    Dollar(String),
    Block(usize),
}

/// `\set name value...` (values concatenated, `:var` interpolated, quotes removed) and
/// `\getenv name ENVVAR` (from `env`); everything else is ignored.
fn meta_command(line: &str, vars: &mut HashMap<String, String>, env: &HashMap<&str, String>) {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("\\set") => {
            let Some(name) = words.next() else { return };
            let mut value = String::new();
            for word in words {
                if let Some(var) = word.strip_prefix(':') {
                    value.push_str(vars.get(var).map(String::as_str).unwrap_or(""));
                } else {
                    value.push_str(word.trim_matches('\''));
                }
            }
            vars.insert(name.to_string(), value);
        }
        Some("\\getenv") => {
            if let (Some(name), Some(value)) = (words.next(), words.next().and_then(|v| env.get(v)))
            {
                vars.insert(name.to_string(), value.clone());
            }
        }
        _ => {}
    }
}

enum CopyFrom {
    Stdin,
    File { path: String, stdin_sql: String },
}

/// Recognises `COPY target FROM STDIN ...` and `COPY target FROM 'path' ...`.
fn copy_from(sql: &str) -> Option<CopyFrom> {
    let lower = sql.to_ascii_lowercase();
    if !lower.starts_with("copy ") {
        return None;
    }
    let from = lower.find(" from ")?;
    let rest = sql[from + 6..].trim_start();
    if rest.to_ascii_lowercase().starts_with("stdin") {
        return Some(CopyFrom::Stdin);
    }
    let quoted = rest.strip_prefix('\'')?;
    let end = quoted.find('\'')?;
    let path = quoted[..end].to_string();
    let stdin_sql = format!("{} FROM STDIN{}", &sql[..from], &quoted[end + 1..]);
    Some(CopyFrom::File { path, stdin_sql })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_psql() {
        let env = HashMap::from([("DIR", "/d".to_string())]);
        let script = "-- c\nSELECT 1; SELECT 'a;b' -- x;\n , $$;$$;\n\\set f :d '/x'\n\\getenv d DIR\n\\set f :d '/x'\nselect :'f', 1::int;\nCOPY t FROM stdin;\n1\n\\.\nselect (1;\n2);\n";
        let s = split(script, &env);
        let sqls: Vec<&str> = s.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sqls,
            vec![
                "SELECT 1",
                "SELECT 'a;b' -- x;\n , $$;$$",
                "select '/d/x', 1::int",
                "COPY t FROM stdin",
                "select (1;\n2)"
            ]
        );
        assert_eq!(s[1].line, 2);
        assert_eq!(s[3].copy_data.as_deref(), Some(&b"1\n"[..]));
    }
}
