//! nginx's configuration syntax: tokens, directives and blocks, with `include` expanded in
//! place, every directive remembering the file and line it came from.
//!
//! The rules follow nginx's own reader (`ngx_conf_file.c`): a directive is words up to `;` or
//! a `{ ... }` block; words may be quoted with `"` or `'` (backslash escapes inside); `#` starts
//! a comment where a word could start; relative `include` paths resolve against the main
//! file's directory (nginx's prefix), globs expand in sorted order and may match nothing.
//! Errors carry the line nginx itself reports (end of file: one past the last line).

use std::path::{Path, PathBuf};

/// One directive: `name arg...;` or `name arg... { block }`.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub at: Loc,
    pub block: Option<Vec<Directive>>,
}

/// Where a directive starts: an index into [`Tree::files`] and a 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub file: usize,
    pub line: usize,
}

/// A parsed configuration: the main file's directives, includes expanded.
#[derive(Debug)]
pub struct Tree {
    pub directives: Vec<Directive>,
    /// Every file read, as shown in messages (relative to the main file's directory where
    /// possible); index 0 is the main file.
    pub files: Vec<String>,
    /// The main file's directory: relative paths in the config resolve against it.
    pub base: PathBuf,
}

impl Tree {
    /// `file:line` for messages and comments.
    pub fn loc(&self, at: Loc) -> String {
        format!("{}:{}", self.files[at.file], at.line)
    }
}

/// A syntax error, or a file that cannot be read: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SyntaxError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Includes nested deeper than this are a loop (nginx has no limit and recurses forever).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Read and parse `path` and everything it includes.
pub fn parse_file(path: &Path) -> Result<Tree, SyntaxError> {
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let shown = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let text = std::fs::read_to_string(path).map_err(|e| SyntaxError {
        file: path.display().to_string(),
        line: 1,
        message: format!("cannot read the nginx config: {e}"),
    })?;
    let mut p = Parser {
        base: base.clone(),
        files: vec![shown],
    };
    let directives = p.parse_text(&text, 0, 0)?;
    Ok(Tree {
        directives,
        files: p.files,
        base,
    })
}

/// Parse config text held in memory (tests), with includes relative to `base`.
pub fn parse_str(text: &str, name: &str, base: &Path) -> Result<Tree, SyntaxError> {
    let mut p = Parser {
        base: base.to_path_buf(),
        files: vec![name.to_string()],
    };
    let directives = p.parse_text(text, 0, 0)?;
    Ok(Tree {
        directives,
        files: p.files,
        base: base.to_path_buf(),
    })
}

struct Parser {
    base: PathBuf,
    files: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// Splits text into tokens with their lines.
struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    /// The line nginx reports at end of file: one past the last newline.
    fn eof_line(&self) -> usize {
        self.line
    }

    fn next(&mut self) -> Result<Option<(Token, usize)>, (usize, String)> {
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Ok(None);
            };
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b';' => return Ok(Some(self.single(Token::Semicolon))),
                b'{' => return Ok(Some(self.single(Token::Open))),
                b'}' => return Ok(Some(self.single(Token::Close))),
                b'"' | b'\'' => return self.quoted(b).map(Some),
                _ => return Ok(Some(self.word())),
            }
        }
    }

    fn single(&mut self, t: Token) -> (Token, usize) {
        self.pos += 1;
        (t, self.line)
    }

    fn quoted(&mut self, quote: u8) -> Result<(Token, usize), (usize, String)> {
        let line = self.line;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err((
                    self.eof_line(),
                    "unexpected end of file, expecting \";\" or \"}\"".to_string(),
                ));
            };
            self.pos += 1;
            match b {
                b'\\' => {
                    if let Some(&next) = self.bytes.get(self.pos) {
                        // nginx keeps the backslash except before the quote or a backslash.
                        if next != quote && next != b'\\' {
                            out.push(b'\\');
                        }
                        if next == b'\n' {
                            self.line += 1;
                        }
                        out.push(next);
                        self.pos += 1;
                    }
                }
                b'\n' => {
                    self.line += 1;
                    out.push(b);
                }
                _ if b == quote => break,
                _ => out.push(b),
            }
        }
        // A quoted word must be followed by a separator (nginx: `unexpected "x"`); `)` may
        // follow one, as in `if ($x ~ "re")`, and starts a word of its own.
        if let Some(&b) = self.bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' | b')') {
                return Err((self.line, format!("unexpected \"{}\"", b as char)));
            }
        }
        Ok((
            Token::Word(String::from_utf8_lossy(&out).into_owned()),
            line,
        ))
    }

    fn word(&mut self) -> (Token, usize) {
        let start = self.pos;
        let line = self.line;
        let mut depth = 0usize;
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b'\\' => {
                    self.pos += 2;
                    continue;
                }
                // `${var}` may sit inside a word; its braces are not blocks.
                b'{' if self.pos > start && self.bytes[self.pos - 1] == b'$' => depth += 1,
                b'}' if depth > 0 => depth -= 1,
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'}' => break,
                _ => {}
            }
            self.pos += 1;
        }
        let end = self.pos.min(self.bytes.len());
        let text = String::from_utf8_lossy(&self.bytes[start..end]).into_owned();
        (Token::Word(text), line)
    }
}

impl Parser {
    fn parse_text(
        &mut self,
        text: &str,
        file: usize,
        depth: usize,
    ) -> Result<Vec<Directive>, SyntaxError> {
        let mut lexer = Lexer {
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
        };
        let err = |this: &Parser, line: usize, message: String| SyntaxError {
            file: this.files[file].clone(),
            line,
            message,
        };
        // The blocks being filled, innermost last; the outermost is the file itself.
        let mut stack: Vec<(Directive, Vec<Directive>)> = Vec::new();
        let mut top: Vec<Directive> = Vec::new();
        let mut words: Vec<(String, usize)> = Vec::new();
        loop {
            let token = lexer.next().map_err(|(line, m)| err(self, line, m))?;
            match token {
                None => {
                    if !words.is_empty() {
                        let m = "unexpected end of file, expecting \";\" or \"}\"";
                        return Err(err(self, lexer.eof_line(), m.to_string()));
                    }
                    if !stack.is_empty() {
                        let m = "unexpected end of file, expecting \"}\"; a block is never closed";
                        return Err(err(self, lexer.eof_line(), m.to_string()));
                    }
                    return Ok(top);
                }
                Some((Token::Word(w), line)) => words.push((w, line)),
                Some((Token::Semicolon, line)) => {
                    let Some(d) = directive(&mut words, file) else {
                        return Err(err(self, line, "unexpected \";\"".to_string()));
                    };
                    let target = stack.last_mut().map_or(&mut top, |(_, body)| body);
                    if d.name == "include" {
                        let included = self.include(&d, depth)?;
                        target.extend(included);
                    } else {
                        target.push(d);
                    }
                }
                Some((Token::Open, line)) => {
                    let Some(d) = directive(&mut words, file) else {
                        return Err(err(self, line, "unexpected \"{\"".to_string()));
                    };
                    stack.push((d, Vec::new()));
                }
                Some((Token::Close, line)) => {
                    if !words.is_empty() {
                        let m = "unexpected \"}\"; the directive before it is missing its \";\"";
                        return Err(err(self, line, m.to_string()));
                    }
                    let Some((mut d, body)) = stack.pop() else {
                        let m = "unexpected \"}\"; it closes no block (one \"}\" too many?)";
                        return Err(err(self, line, m.to_string()));
                    };
                    d.block = Some(body);
                    stack.last_mut().map_or(&mut top, |(_, b)| b).push(d);
                }
            }
        }
    }

    /// The directives of the files an `include` names, parsed in place.
    fn include(&mut self, d: &Directive, depth: usize) -> Result<Vec<Directive>, SyntaxError> {
        let err = |this: &Parser, message: String| SyntaxError {
            file: this.files[d.at.file].clone(),
            line: d.at.line,
            message,
        };
        let [pattern] = d.args.as_slice() else {
            return Err(err(
                self,
                "invalid number of arguments in \"include\"; it takes one path".to_string(),
            ));
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(err(
                self,
                format!("include {pattern}: includes nest deeper than {MAX_INCLUDE_DEPTH}; does a file include itself?"),
            ));
        }
        let full = self.base.join(pattern);
        let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            let text = full.to_string_lossy().into_owned();
            let found = glob::glob(&text)
                .map_err(|e| err(self, format!("include {pattern}: bad pattern: {e}")))?;
            let mut paths: Vec<PathBuf> = found
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            paths
        } else {
            vec![full]
        };
        let mut out = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "No such file or directory".to_string(),
                    _ => e.to_string(),
                };
                err(self, format!("cannot open included file {}: {why} (nginx refuses this config too; copy the file beside the config or remove the include)", shown(&self.base, &path)))
            })?;
            self.files.push(shown(&self.base, &path));
            let index = self.files.len() - 1;
            out.extend(self.parse_text(&text, index, depth + 1)?);
        }
        Ok(out)
    }
}

/// A path as shown in messages: relative to the main file's directory when inside it.
fn shown(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn directive(words: &mut Vec<(String, usize)>, file: usize) -> Option<Directive> {
    if words.is_empty() {
        return None;
    }
    let mut it = std::mem::take(words).into_iter();
    let (name, line) = it.next()?;
    Some(Directive {
        name,
        args: it.map(|(w, _)| w).collect(),
        at: Loc { file, line },
        block: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Tree, SyntaxError> {
        parse_str(text, "t.conf", Path::new("/nonexistent"))
    }

    #[test]
    fn directives_blocks_quotes_and_comments() {
        let t = parse(
            "worker_processes 4; # four\nhttp {\n  map $http_upgrade $c { default upgrade; '' close; }\n  add_header X \"a;b {c}\";\n  log_format x '$remote_addr \\'q\\'';\n}\n",
        )
        .unwrap();
        assert_eq!(t.directives.len(), 2);
        assert_eq!(t.directives[0].args, ["4"]);
        let http = t.directives[1].block.as_ref().unwrap();
        assert_eq!(t.directives[1].at.line, 2);
        let map = http[0].block.as_ref().unwrap();
        assert_eq!(map[1].name, "");
        assert_eq!(map[1].args, ["close"]);
        assert_eq!(http[1].args, ["X", "a;b {c}"]);
        assert_eq!(http[2].args, ["x", "$remote_addr 'q'"]);
        assert_eq!(http[2].at.line, 5);
    }

    #[test]
    fn variables_with_braces_stay_in_their_word() {
        let t = parse("set $x ${host}_suffix;\n").unwrap();
        assert_eq!(t.directives[0].args, ["$x", "${host}_suffix"]);
    }

    #[test]
    fn errors_name_the_line_nginx_reports() {
        let e = |text: &str| parse(text).unwrap_err();
        assert_eq!(e("http {\n  server 1\n}\n").line, 3);
        assert!(e("http {\n  server 1\n}\n")
            .message
            .contains("missing its \";\""));
        assert_eq!(e("http {\n  a 1;\n").line, 3);
        assert_eq!(e("a 1;\n}\n").line, 2);
        assert_eq!(e("a \"open;\nb;\n").line, 3);
        assert_eq!(e("a 1").line, 1);
        assert_eq!(e("{ }").message, "unexpected \"{\"");
        assert_eq!(e(" ;").message, "unexpected \";\"");
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "\"",
            "'",
            "\\",
            "{{{{",
            "}}}}",
            "a \"b\"c;",
            "${",
            "$",
            "a ${b;",
            "#",
        ] {
            let _ = parse(text);
        }
    }
}
