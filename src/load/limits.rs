//! The open-file limit: refuse up front a --clients count the process cannot hold, instead of
//! failing one connection at a time with EMFILE.
//!
//! Read from /proc (Linux); where it cannot be read the check is skipped and EMFILE is still
//! counted as an error kind, never a panic.

use super::LoadError;

/// Descriptors kept for the runtime (epoll, timers, eventfd), stdio, and socket churn: a client
/// that reconnects can briefly hold its old and its new socket.
const RESERVE: u64 = 64;

/// Every flow holds at most one connection per client at a time.
pub(crate) fn check_open_files(clients: usize) -> Result<(), LoadError> {
    let (Some(limit), Some(in_use)) = (soft_limit(), open_now()) else {
        return Ok(());
    };
    check(clients, limit, in_use)
}

fn check(clients: usize, limit: u64, in_use: u64) -> Result<(), LoadError> {
    let needed = clients as u64 + RESERVE;
    let available = limit.saturating_sub(in_use);
    if needed <= available {
        return Ok(());
    }
    Err(LoadError::TooManyClients {
        clients,
        needed: needed + in_use,
        limit,
        in_use,
        max_clients: available.saturating_sub(RESERVE),
    })
}

/// The soft RLIMIT_NOFILE, from the "Max open files" line of /proc/self/limits.
fn soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_limits(&limits)
}

fn parse_limits(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    // "unlimited" means no limit worth checking.
    soft.parse().ok()
}

/// Descriptors this process has open now.
fn open_now() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max cpu time              unlimited            unlimited            seconds   \n\
        Max open files            20000                20000                files     \n\
        Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn reads_the_soft_limit() {
        assert_eq!(parse_limits(LIMITS), Some(20000));
        assert_eq!(
            parse_limits("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(parse_limits(""), None);
        // On Linux the real file parses too.
        if cfg!(target_os = "linux") {
            assert!(soft_limit().is_some_and(|l| l > 0));
            assert!(open_now().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn refuses_more_clients_than_descriptors() {
        assert!(check(1000, 20000, 10).is_ok());
        assert!(check(19926, 20000, 10).is_ok());
        let err = check(30000, 20000, 10).unwrap_err();
        match &err {
            LoadError::TooManyClients {
                max_clients, limit, ..
            } => assert_eq!((*max_clients, *limit), (19926, 20000)),
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("--clients 30000") && msg.contains("ulimit -n"),
            "{msg}"
        );
        assert!(check(1, 10, 20).is_err());
    }
}
