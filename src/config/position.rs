//! Where each key and value sits in the YAML text, by dotted path
//! (`upstreams.realtime.nodes[1].address`), so diagnostics can point at them.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column (ordered by line, then column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

const START: Pos = Pos { line: 1, col: 1 };

/// Key and value positions by path; a path seen twice (a duplicated key) keeps every occurrence.
#[derive(Debug, Default)]
pub struct Positions {
    entries: HashMap<String, Vec<(Pos, Pos)>>,
}

impl Positions {
    /// Indexes `text`, and says whether it is well-formed YAML. A syntax error just ends the
    /// index early: serde_yaml reports it with its own position.
    pub fn index(text: &str) -> (Positions, bool) {
        let mut b = Builder::default();
        let ok = Parser::new_from_str(text).load(&mut b, false).is_ok();
        (Positions { entries: b.entries }, ok)
    }

    /// The key of `path` (a sequence item's key is the item itself).
    pub fn key(&self, path: &str) -> Pos {
        self.nth_key(path, 0)
    }

    /// The key of the `n`th occurrence of `path`.
    pub fn nth_key(&self, path: &str, n: usize) -> Pos {
        self.find(path, n).0
    }

    /// The value of `path`.
    pub fn value(&self, path: &str) -> Pos {
        self.find(path, 0).1
    }

    /// Falls back to the nearest indexed ancestor: aliases and syntax errors leave holes.
    fn find(&self, path: &str, n: usize) -> (Pos, Pos) {
        let mut p = path;
        loop {
            if let Some(v) = self.entries.get(p) {
                return v.get(n).or(v.first()).copied().unwrap_or((START, START));
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return (START, START),
            }
        }
    }
}

enum Frame {
    /// `pending` holds the key (and its position) whose value comes next; `None` means a key comes next.
    Map {
        path: String,
        pending: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    entries: HashMap<String, Vec<(Pos, Pos)>>,
}

impl Builder {
    /// Accounts for a node starting at `pos` and returns its path. Keys are remembered, not
    /// recorded; a complex (non-scalar) key gets a `?` path nothing will ask for.
    fn node(&mut self, pos: Pos, scalar: Option<&str>) -> String {
        let (path, key_pos) = match self.stack.last_mut() {
            None => (String::new(), pos),
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                (format!("{path}[{}]", *next - 1), pos)
            }
            Some(Frame::Map { path, pending }) => match pending.take() {
                Some((key, key_pos)) if path.is_empty() => (key, key_pos),
                Some((key, key_pos)) => (format!("{path}.{key}"), key_pos),
                None => {
                    *pending = Some((scalar.unwrap_or("?").to_string(), pos));
                    // yaml-rust2 marks a block mapping at its first `:`; its first key is where
                    // a reader sees it start (a list item's `- id: x` starts at `id`).
                    if let Some((key, value)) = self
                        .entries
                        .get_mut(path.as_str())
                        .and_then(|v| v.last_mut())
                    {
                        if pos < *value {
                            if key == value {
                                *key = pos;
                            }
                            *value = pos;
                        }
                    }
                    return format!("{path}.?");
                }
            },
        };
        self.entries
            .entry(path.clone())
            .or_default()
            .push((key_pos, pos));
        path
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2 0.10 counts lines from 1 but columns from 0.
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(s, ..) => {
                self.node(pos, Some(&s));
            }
            Event::Alias(_) => {
                self.node(pos, Some("*"));
            }
            Event::MappingStart(..) => {
                let path = self.node(pos, None);
                self.stack.push(Frame::Map {
                    path,
                    pending: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.node(pos, None);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}
