//! Environment files in the syntax of systemd's `EnvironmentFile=`, for
//! `listenfd run --env-file`.
//!
//! As systemd (254 and later) reads them: `KEY=VALUE` per line; blank lines
//! and lines whose first non-blank character is `#` or `;` are comments;
//! whitespace around the key and before the value is dropped, and after an
//! unquoted value too. A value that starts with a quote is quoted: `'...'`
//! literally, `"..."` with the escapes `\"`, `\\`, `` \` `` and `\$` (any
//! other backslash stays); after the closing quote, blanks are skipped and
//! what follows is appended (`'a' 'b'` is `ab`). Quotes later in a value are
//! plain characters (`a"b"` is `a"b"`). Outside quotes a backslash takes the
//! next character literally, and a backslash at the end of a line joins the
//! next one. `\r` counts as a line end too.
//!
//! Stricter than systemd, on purpose (a deploy should fail loudly, not run
//! with a variable silently missing): a key that is not a valid variable name
//! (letters, digits, `_`, not starting with a digit), a line with a key and
//! no `=`, a quote left open at the end of the file, and text that is not
//! UTF-8 are errors naming the line; systemd drops such lines with a warning.

use std::path::Path;

/// What is wrong, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub problem: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    PreKey,
    Key,
    PreValue,
    Value,
    ValueEscape,
    SingleQuote,
    DoubleQuote,
    DoubleQuoteEscape,
    Comment,
    CommentEscape,
}

fn valid_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The state machine of systemd's `parse_env_file_internal`, one character
/// at a time.
struct Parser {
    out: Vec<(String, String)>,
    state: State,
    key: String,
    value: String,
    /// Length of `value` before trailing unquoted whitespace (dropped).
    value_end: usize,
    line: usize,
    key_line: usize,
    quote_line: usize,
}

impl Parser {
    fn no_equals(&self) -> SyntaxError {
        SyntaxError {
            line: self.key_line,
            problem: format!("{:?} has no '=': expected KEY=VALUE", self.key.trim_end()),
        }
    }

    fn start_value(&mut self) {
        self.value.clear();
        self.value_end = 0;
        self.state = State::PreValue;
    }

    fn open_quote(&mut self, quote: State) {
        self.quote_line = self.line;
        self.state = quote;
    }

    fn close_quote(&mut self) {
        self.value_end = self.value.len();
        self.state = State::PreValue;
    }

    fn push_unquoted(&mut self, c: char) {
        self.value.push(c);
        if !c.is_ascii_whitespace() {
            self.value_end = self.value.len();
        }
        self.state = State::Value;
    }

    /// The assignment ends here (a line end, or the end of the file).
    fn assign(&mut self) -> Result<(), SyntaxError> {
        let name = self.key.trim_end();
        if !valid_name(name) {
            return Err(SyntaxError {
                line: self.key_line,
                problem: format!(
                    "{name:?} is not a valid variable name (letters, digits and _, \
                     not starting with a digit)"
                ),
            });
        }
        self.value.truncate(self.value_end);
        self.out
            .push((name.to_owned(), std::mem::take(&mut self.value)));
        self.key.clear();
        self.state = State::PreKey;
        Ok(())
    }

    fn step(&mut self, c: char) -> Result<(), SyntaxError> {
        let newline = c == '\n' || c == '\r';
        match (self.state, c) {
            (State::PreKey, '#' | ';') => self.state = State::Comment,
            (State::PreKey, c) if c.is_ascii_whitespace() => {}
            (State::PreKey, '=') => {
                // No name at all: reported as an invalid one, with its line.
                self.key_line = self.line;
                self.start_value();
            }
            (State::PreKey, c) => {
                self.key.push(c);
                self.key_line = self.line;
                self.state = State::Key;
            }
            (State::Key, '=') => self.start_value(),
            (State::Key, _) if newline => return Err(self.no_equals()),
            (State::Key, c) => self.key.push(c),
            (State::PreValue | State::Value, _) if newline => self.assign()?,
            (State::PreValue, '\'') => self.open_quote(State::SingleQuote),
            (State::PreValue, '"') => self.open_quote(State::DoubleQuote),
            (State::PreValue | State::Value, '\\') => self.state = State::ValueEscape,
            (State::PreValue, c) if c.is_ascii_whitespace() => {}
            (State::PreValue | State::Value, c) => self.push_unquoted(c),
            (State::ValueEscape, _) if newline => self.state = State::Value,
            (State::ValueEscape, c) => {
                self.value.push(c);
                self.value_end = self.value.len();
                self.state = State::Value;
            }
            (State::SingleQuote, '\'') | (State::DoubleQuote, '"') => self.close_quote(),
            (State::DoubleQuote, '\\') => self.state = State::DoubleQuoteEscape,
            (State::SingleQuote | State::DoubleQuote, c) => self.value.push(c),
            (State::DoubleQuoteEscape, c) => {
                match c {
                    '"' | '\\' | '`' | '$' => self.value.push(c),
                    '\n' => {}
                    c => {
                        self.value.push('\\');
                        self.value.push(c);
                    }
                }
                self.state = State::DoubleQuote;
            }
            (State::Comment, '\\') => self.state = State::CommentEscape,
            (State::Comment | State::CommentEscape, _) if newline => self.state = State::PreKey,
            (State::Comment | State::CommentEscape, _) => self.state = State::Comment,
        }
        if newline {
            self.line += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<(String, String)>, SyntaxError> {
        match self.state {
            State::PreKey | State::Comment | State::CommentEscape => {}
            State::Key => return Err(self.no_equals()),
            State::SingleQuote | State::DoubleQuote | State::DoubleQuoteEscape => {
                return Err(SyntaxError {
                    line: self.quote_line,
                    problem: "a quote opened here is never closed".into(),
                })
            }
            State::PreValue | State::Value | State::ValueEscape => self.assign()?,
        }
        Ok(self.out)
    }
}

/// The assignments of one file, in order (a key set twice keeps both; the
/// caller applies them in order, so the last one wins).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let mut parser = Parser {
        out: Vec::new(),
        state: State::PreKey,
        key: String::new(),
        value: String::new(),
        value_end: 0,
        line: 1,
        key_line: 1,
        quote_line: 1,
    };
    for c in text.chars() {
        parser.step(c)?;
    }
    parser.finish()
}

/// Why reading the environment files failed: the path, and the line or the
/// system error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read every file in order (later files win). `-PATH`, as in systemd, may
/// be missing.
pub fn load(paths: &[impl AsRef<Path>]) -> Result<Vec<(String, String)>, LoadError> {
    let mut all = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let text = path.to_string_lossy();
        let (optional, path) = match text.strip_prefix('-') {
            Some(rest) => (true, Path::new(rest).to_path_buf()),
            None => (false, path.to_path_buf()),
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LoadError(format!("--env-file {}: {e}", path.display()))),
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + std::str::from_utf8(valid).map_or(0, |t| t.matches('\n').count());
            LoadError(format!(
                "--env-file {}, line {line}: not UTF-8 text",
                path.display()
            ))
        })?;
        let assignments = parse(&text).map_err(|e| {
            LoadError(format!(
                "--env-file {}, line {}: {}",
                path.display(),
                e.line,
                e.problem
            ))
        })?;
        all.extend(assignments);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    #[test]
    fn valid_files() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("A=1", &[("A", "1")]),
            ("A=1\nB=two words\n", &[("A", "1"), ("B", "two words")]),
            ("  A  =  spaced  \n", &[("A", "spaced")]),
            ("# comment\n; also\n\nA=1\n", &[("A", "1")]),
            ("A=\n", &[("A", "")]),
            ("A=", &[("A", "")]),
            ("A='single $HOME \\n'", &[("A", "single $HOME \\n")]),
            (
                "A=\"dq \\\" \\\\ \\$ \\` \\n\"",
                &[("A", "dq \" \\ $ ` \\n")],
            ),
            ("A='a' 'b'", &[("A", "ab")]),
            ("A=\"x\"y z  ", &[("A", "xy z")]),
            ("A=a\"b c\"'d'", &[("A", "a\"b c\"'d'")]),
            ("A='x'  \n", &[("A", "x")]),
            ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("A=\"  keep  \"", &[("A", "  keep  ")]),
            ("A=one\\\ntwo\n", &[("A", "onetwo")]),
            ("A=\\ lead", &[("A", " lead")]),
            ("A=x\\ \n", &[("A", "x ")]),
            ("A=\"multi\nline\"\n", &[("A", "multi\nline")]),
            ("# ends with a backslash \\\nA=1", &[("A", "1")]),
            ("A=1\nA=2\n", &[("A", "1"), ("A", "2")]),
            ("A=a=b", &[("A", "a=b")]),
            ("_x9=é", &[("_x9", "é")]),
            ("A=1 # not a comment", &[("A", "1 # not a comment")]),
        ];
        for (text, expected) in cases {
            let expected: Vec<_> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(vars(text), expected, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "A=1\nmy-var=2\n",
                2,
                "\"my-var\" is not a valid variable name",
            ),
            ("9A=1", 1, "not a valid variable name"),
            ("A=1\n\nJUSTAKEY\nB=2", 3, "\"JUSTAKEY\" has no '='"),
            ("A=1\nLAST", 2, "has no '='"),
            ("A=1\nB='open\n\n", 2, "never closed"),
            ("A=\"open", 1, "never closed"),
            ("=value", 1, "\"\" is not a valid variable name"),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err:?}");
            assert!(err.problem.contains(needle), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn load_files_in_order() {
        let dir = std::env::temp_dir().join(format!("listenfd-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, bad) = (dir.join("a.env"), dir.join("b.env"), dir.join("bad.env"));
        std::fs::write(&a, "X=1\nY=1\n").unwrap();
        std::fs::write(&b, "Y=2\n").unwrap();
        std::fs::write(&bad, "X=1\nnot valid\n").unwrap();
        let got = load(&[&a, &b]).unwrap();
        assert_eq!(got.last().unwrap(), &("Y".to_owned(), "2".to_owned()));
        let missing = dir.join("missing.env");
        let err = load(&[&missing]).unwrap_err().0;
        assert!(
            err.contains("missing.env") && err.contains("No such file"),
            "{err}"
        );
        let optional = format!("-{}", missing.display());
        assert_eq!(load(&[&optional]).unwrap(), []);
        let err = load(&[&bad]).unwrap_err().0;
        assert!(
            err.contains("bad.env, line 2: \"not valid\" has no '='"),
            "{err}"
        );
        std::fs::write(&bad, b"X=1\nY=\xff\n").unwrap();
        let err = load(&[&bad]).unwrap_err().0;
        assert!(err.ends_with("bad.env, line 2: not UTF-8 text"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
