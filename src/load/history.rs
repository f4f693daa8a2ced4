//! `--history`: every client's node changes and errors with their time, for a program (the soak
//! bench) that must tell a client moved because its node left from a pin that broke.
//!
//! Each client keeps its own journal (no lock while it runs) and hands it to the run's
//! [`Recorder`] when it is dropped, which also happens when the hard deadline aborts it.

use super::stats::ErrorKind;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Events kept per client; a client failing in a loop for hours cannot grow without bound.
const MAX_EVENTS: usize = 4096;

/// What every client went through, in the `--json` report under `history`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct History {
    /// When the run started, in milliseconds since the Unix epoch; every `at_ms` counts from it.
    pub started_unix_ms: u64,
    /// Clients that saw a node or an error, by index.
    pub clients: Vec<ClientHistory>,
}

/// One client's journal.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClientHistory {
    pub client: u64,
    /// The flow it ran (for `mixed`: http, longpoll or ws).
    pub flow: &'static str,
    /// The first node it saw, each change of node, and each error, in order.
    pub events: Vec<Event>,
    /// Events left out beyond the cap (4096 per client).
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A node seen for the first time or after another one, or an error; `at_ms` from the start.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The error kind, named as in the report's `errors` object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// Where the journals of finished clients go.
pub(crate) struct Recorder {
    start: Instant,
    started_unix_ms: u64,
    done: Mutex<Vec<ClientHistory>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Recorder {
            start,
            started_unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            done: Mutex::new(Vec::new()),
        }
    }

    fn at_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn keep(&self, journal: ClientHistory) {
        if !journal.events.is_empty() {
            self.done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(journal);
        }
    }

    /// Every journal handed in so far, by client index.
    pub fn finish(&self) -> History {
        let mut clients = self.done.lock().unwrap_or_else(|e| e.into_inner()).clone();
        clients.sort_by_key(|c| c.client);
        History {
            started_unix_ms: self.started_unix_ms,
            clients,
        }
    }
}

/// One client's journal while it runs.
pub(crate) struct Journal {
    current: Option<Box<str>>,
    record: ClientHistory,
}

impl Journal {
    pub fn new(client: usize, flow: &'static str) -> Journal {
        Journal {
            current: None,
            record: ClientHistory {
                client: client as u64,
                flow,
                events: Vec::new(),
                dropped: 0,
            },
        }
    }

    fn push(&mut self, event: Event) {
        if self.record.events.len() < MAX_EVENTS {
            self.record.events.push(event);
        } else {
            self.record.dropped += 1;
        }
    }

    /// The client's traffic reached `node` (non-empty, trimmed): an event if it differs from the
    /// last one seen.
    pub fn node(&mut self, recorder: &Recorder, node: &str) {
        if self.current.as_deref() == Some(node) {
            return;
        }
        self.current = Some(node.into());
        let at_ms = recorder.at_ms();
        self.push(Event {
            at_ms,
            node: Some(node.to_owned()),
            error: None,
        });
    }

    pub fn error(&mut self, recorder: &Recorder, kind: ErrorKind) {
        let at_ms = recorder.at_ms();
        self.push(Event {
            at_ms,
            node: None,
            error: Some(kind.name()),
        });
    }

    /// Hand the journal to the recorder (when the client is dropped).
    pub fn finish(self, recorder: &Recorder) {
        recorder.keep(self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn records_changes_and_errors_with_their_time() {
        let rec = Recorder::new(Instant::now());
        let mut a = Journal::new(7, "http");
        let mut b = Journal::new(2, "ws");
        let silent = Journal::new(5, "ws");
        a.node(&rec, "n1");
        tokio::time::advance(std::time::Duration::from_millis(250)).await;
        a.node(&rec, "n1");
        a.error(&rec, ErrorKind::WsClosed);
        a.node(&rec, "n2");
        b.node(&rec, "n3");
        a.finish(&rec);
        b.finish(&rec);
        silent.finish(&rec);
        let h = rec.finish();
        assert!(h.started_unix_ms > 1_600_000_000_000);
        assert_eq!(
            h.clients.iter().map(|c| c.client).collect::<Vec<_>>(),
            [2, 7],
            "sorted, and a client that saw nothing is left out"
        );
        let json = serde_json::to_value(&h.clients[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "client": 7,
                "flow": "http",
                "events": [
                    {"at_ms": 0, "node": "n1"},
                    {"at_ms": 250, "error": "ws_closed"},
                    {"at_ms": 250, "node": "n2"},
                ],
            })
        );
    }

    #[test]
    fn bounded_per_client() {
        let rec = Recorder::new(Instant::now());
        let mut j = Journal::new(0, "http");
        for _ in 0..MAX_EVENTS + 3 {
            j.error(&rec, ErrorKind::Connect);
        }
        j.finish(&rec);
        let h = rec.finish();
        assert_eq!(h.clients[0].events.len(), MAX_EVENTS);
        assert_eq!(h.clients[0].dropped, 3);
    }
}
