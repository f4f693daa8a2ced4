//! The sections about tether's own process: the `admin` API, how `shutdown` drains, and what
//! it writes to its `log`.

use super::{Checker, KEYGEN};
use crate::config::defaults::*;
use crate::config::file::{FileAdmin, FileLog, FileShutdown};
use crate::config::model::{Admin, Listener, Log, LogFormat, Shutdown};

impl Checker<'_> {
    /// `Some(None)`: no admin section; `None`: a problem was reported.
    pub(super) fn admin(
        &mut self,
        a: Option<&FileAdmin>,
        listen: &[Listener],
    ) -> Option<Option<Admin>> {
        let Some(a) = a else {
            return Some(None);
        };
        let token = match a.token_env.as_deref().map(str::trim) {
            None => Some(None),
            Some("") => self.bad("admin.token_env", "is empty; name the environment variable that holds the admin token, e.g. `TETHER_ADMIN_TOKEN`"),
            Some(var) => match (self.cx.env)(var) {
                None => self.bad("admin.token_env", format_args!("environment variable {var} is not set; export the admin token in it ({KEYGEN})")),
                Some(v) if v.trim().is_empty() => self.bad("admin.token_env", format_args!("environment variable {var} is empty; export the admin token in it ({KEYGEN})")),
                Some(v) => Some(Some(v.trim().to_string())),
            },
        };
        let Some(text) = &a.address else {
            let hint = "give the IP:PORT the admin API listens on, e.g. `127.0.0.1:9901`, or remove `admin` to run without it";
            return self.missing("admin", "address", hint);
        };
        let address = self.socket_addr("admin.address", text, true)?;
        let clash = listen.iter().find(|l| {
            let (x, y) = (l.address, address);
            x.port() == y.port()
                && y.port() != 0
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        });
        if let Some(l) = clash {
            let msg = format_args!(
                "`{text}` overlaps the listen address `{}`; give the admin API a port of its own",
                l.address
            );
            return self.bad("admin.address", msg);
        }
        if a.token_env.is_none() && !address.ip().to_canonical().is_loopback() {
            return self.bad("admin.address", format_args!("`{text}` is not a loopback address, so anyone who can reach it could drain nodes and reload the config; add `token_env` naming an environment variable that holds a secret token ({KEYGEN}), or listen on 127.0.0.1"));
        }
        Some(Some(Admin {
            address,
            token: token?,
        }))
    }

    pub(super) fn shutdown(&mut self, s: Option<&FileShutdown>) -> Option<Shutdown> {
        let empty = FileShutdown::default();
        let s = s.unwrap_or(&empty);
        let grace = self.span("shutdown.grace", s.grace.as_ref(), DEFAULT_SHUTDOWN_GRACE);
        let close_window = self.span(
            "shutdown.close_window",
            s.close_window.as_ref(),
            DEFAULT_SHUTDOWN_CLOSE_WINDOW,
        );
        let upgrade = self.timeout(
            "shutdown.upgrade_timeout",
            s.upgrade_timeout.as_ref(),
            DEFAULT_UPGRADE_TIMEOUT,
        );
        Some(Shutdown {
            grace: grace?,
            close_window: close_window?,
            upgrade_timeout: upgrade?,
        })
    }

    pub(super) fn log(&mut self, l: Option<&FileLog>) -> Option<Log> {
        let Some(l) = l else {
            return Some(Log::default());
        };
        let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
        let format = match &l.format {
            None => Some(DEFAULT_LOG_FORMAT),
            Some(f) => self.choice("log.format", f, &formats),
        };
        Some(Log {
            format: format?,
            access: l.access.unwrap_or(DEFAULT_ACCESS_LOG),
        })
    }
}
