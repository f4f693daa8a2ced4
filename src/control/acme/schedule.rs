//! When the ACME loop orders, retries and warns: pure arithmetic on Unix seconds, tested alone.

use crate::certs::Validity;
use std::time::Duration;

/// The longest the loop sleeps between looks (a certificate close to expiry warns at each).
pub const CHECK: Duration = Duration::from_secs(3600);
/// A certificate this close to expiry warns at every check.
pub const WARN_BEFORE: u64 = 7 * 24 * 3600;
/// The bound on one order, from the first request to the stored certificate.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(180);
/// A storage lock older than this was left by a replica that died while ordering (an order is
/// bounded by [`ORDER_TIMEOUT`]), and is taken over.
pub const STALE_LOCK: Duration = Duration::from_secs(600);
/// How often a replica that is due but finds the lock held looks for the other's result.
pub const PEER_POLL: Duration = Duration::from_secs(1);
/// The first retry after a failed order; each further failure doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: u64 = 10;
pub const MAX_BACKOFF: u64 = 3600;

/// Renewal time without a server's window: two thirds into the validity (Let's Encrypt's own
/// advice: a 90-day certificate is renewed with 30 days left, so a month of failed retries
/// still does not reach expiry).
pub fn two_thirds(v: Validity) -> u64 {
    v.not_before + v.not_after.saturating_sub(v.not_before) * 2 / 3
}

/// The wait before retrying after `failures` failed orders in a row (10 s, 20 s, 40 s, ... 1 h).
pub fn backoff(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    (FIRST_BACKOFF << doublings).min(MAX_BACKOFF)
}

/// A time in the server's suggested renewal window (ARI, RFC 9773 §4.2): uniformly random, so
/// replicas of many deployments do not all renew at its start. `at` is a number in [0, 1).
pub fn in_window(start: u64, end: u64, at: f64) -> u64 {
    start + ((end.saturating_sub(start)) as f64 * at.clamp(0.0, 1.0)) as u64
}

/// When the loop orders next: at once without a certificate; else at the renewal time (the
/// server's window when it gave one), but never before a failure's back-off runs out.
pub fn next_order(validity: Option<Validity>, window: Option<u64>, retry_at: u64, now: u64) -> u64 {
    let due = match validity {
        None => now,
        Some(v) if v.not_after <= now => now,
        Some(v) => window.unwrap_or_else(|| two_thirds(v)),
    };
    due.max(retry_at)
}

/// The certificate expires within [`WARN_BEFORE`] (or already has).
pub fn expiring(v: Validity, now: u64) -> bool {
    v.not_after <= now + WARN_BEFORE
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn a_ninety_day_certificate_renews_with_thirty_days_left() {
        let v = Validity {
            not_before: 1_000,
            not_after: 1_000 + 90 * DAY,
        };
        assert_eq!(two_thirds(v), 1_000 + 60 * DAY);
        assert_eq!(next_order(Some(v), None, 0, 2_000), 1_000 + 60 * DAY);
        // The server's window wins over two thirds.
        assert_eq!(next_order(Some(v), Some(5_000), 0, 2_000), 5_000);
        // No certificate, or an expired one: now.
        assert_eq!(next_order(None, None, 0, 2_000), 2_000);
        assert_eq!(
            next_order(Some(v), None, 0, 1_000 + 91 * DAY),
            1_000 + 91 * DAY
        );
        // A back-off is never cut short.
        assert_eq!(next_order(None, None, 9_000, 2_000), 9_000);
    }

    #[test]
    fn back_off_doubles_to_an_hour() {
        assert_eq!(backoff(1), 10);
        assert_eq!(backoff(2), 20);
        assert_eq!(backoff(3), 40);
        assert_eq!(backoff(9), 2_560);
        assert_eq!(backoff(10), 3_600);
        assert_eq!(backoff(u32::MAX), 3_600);
    }

    #[test]
    fn warns_within_a_week() {
        let v = Validity {
            not_before: 0,
            not_after: 100 * DAY,
        };
        assert!(!expiring(v, 92 * DAY));
        assert!(expiring(v, 93 * DAY));
        assert!(expiring(v, 101 * DAY));
        assert_eq!(in_window(100, 200, 0.5), 150);
        assert_eq!(in_window(100, 200, 0.0), 100);
        assert!(in_window(100, 200, 0.999) < 200);
    }
}
