//! Certificates that look after themselves: one loop per ACME certificate slot orders the first
//! certificate, renews it at two thirds of its life (or in the CA's ARI window), backs off on
//! failure while the certificate it has stays in use, and picks up what another replica sharing
//! the storage ordered.
//!
//! Replicas coordinate through the storage directory only: the one that takes the slot's lock
//! file orders; the others see the lock, wait, and install the certificate when it appears on
//! disk. Each order's challenge answers are written there too, so the CA's validation can reach
//! any replica behind the same address. No replica talks to another.

mod order;
pub mod schedule;

use super::Control;
use crate::certs::{self, store, Slot, State};
use crate::config::model::Acme;
use crate::runtime::unix_now;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Start a loop for every slot the config uses, now and after each reload.
pub async fn run(control: Arc<Control>) {
    // instant-acme's HTTPS client asks rustls for the process's provider: the same ring the
    // listeners use (an error only means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut reloads = control.config_generation();
    loop {
        for acme in control.acme() {
            if acme.slot.claim_loop() {
                tokio::spawn(keep(Arc::clone(&control), Arc::clone(&acme.slot)));
            }
        }
        if reloads.changed().await.is_err() {
            return;
        }
    }
}

/// The current settings of `slot`, or `None` once no listener uses it.
fn settings(control: &Control, slot: &Arc<Slot>) -> Option<Acme> {
    control
        .acme()
        .into_iter()
        .find(|a| Arc::ptr_eq(&a.slot, slot))
}

/// Keep `slot`'s certificate valid for as long as a listener uses it.
async fn keep(control: Arc<Control>, slot: Arc<Slot>) {
    let dir = slot.dir();
    let mut reloads = control.config_generation();
    let mut seen: Option<SystemTime> = store::certificate_changed(&dir);
    let mut failures = 0u32;
    let mut retry_at = 0u64;
    let mut window: Option<u64> = None;
    loop {
        let Some(acme) = settings(&control, &slot) else {
            certs::forget(&slot);
            tracing::info!(domains = ?slot.domains, "ACME certificate no longer used by any listener");
            return;
        };
        // What another replica (or this one before a restart) stored since the last look.
        let changed = store::certificate_changed(&dir);
        if changed != seen {
            seen = changed;
            if let Some((chain, key)) = store::read_certificate(&dir) {
                match slot.install(&chain, &key) {
                    Ok(v) => {
                        tracing::info!(domains = ?slot.domains, not_after = v.not_after, "certificate picked up from storage");
                        (failures, retry_at, window) = (0, 0, None);
                        slot.status().last_error = None;
                    }
                    Err(e) => {
                        tracing::warn!(domains = ?slot.domains, error = %e, "the stored certificate cannot be used")
                    }
                }
            }
        }
        let now = unix_now();
        let validity = slot.status().validity;
        if let Some(v) = validity {
            if schedule::expiring(v, now) {
                tracing::warn!(domains = ?slot.domains, expires_in_s = v.not_after as i64 - now as i64, "certificate expires within 7 days");
            }
        }
        let due = schedule::next_order(validity, window, retry_at, now);
        {
            let mut status = slot.status();
            status.next_order = Some(due);
            if now < due {
                status.state = if status.last_error.is_some() {
                    State::Failed
                } else {
                    State::Valid
                };
            }
        }
        if now >= due {
            match store::try_lock(&dir, schedule::STALE_LOCK) {
                Ok(Some(lock)) => {
                    // Another replica may have stored a certificate just before the lock was
                    // free: look again before ordering.
                    if store::certificate_changed(&dir) != seen {
                        continue;
                    }
                    slot.status().state = State::Ordering;
                    let started = Instant::now();
                    let result =
                        tokio::time::timeout(schedule::ORDER_TIMEOUT, attempt(&acme, &slot))
                            .await
                            .unwrap_or_else(|_| {
                                Err(format!(
                                    "the order took longer than {} s",
                                    schedule::ORDER_TIMEOUT.as_secs()
                                ))
                            });
                    slot.clear_challenges();
                    store::clear_challenges(&dir);
                    match result {
                        Ok(ari) => {
                            seen = store::certificate_changed(&dir);
                            (failures, retry_at, window) = (0, 0, ari);
                            let ms = started.elapsed().as_millis() as u64;
                            let mut status = slot.status();
                            status.issued += 1;
                            status.last_order_ms = Some(ms);
                            status.last_error = None;
                            status.failures = 0;
                            status.state = State::Valid;
                            drop(status);
                            tracing::info!(domains = ?slot.domains, order_ms = ms, "certificate issued");
                        }
                        Err(e) => {
                            failures += 1;
                            retry_at = unix_now() + schedule::backoff(failures);
                            let mut status = slot.status();
                            status.failed += 1;
                            status.failures = failures;
                            status.last_error = Some(e.clone());
                            status.state = State::Failed;
                            drop(status);
                            tracing::error!(domains = ?slot.domains, error = %e, retry_in_s = schedule::backoff(failures), "ACME order failed; the certificate in use (if any) stays");
                        }
                    }
                    drop(lock);
                    continue;
                }
                Ok(None) => {
                    // Another replica is ordering: its certificate shows up on disk.
                    slot.status().state = State::Waiting;
                    tokio::time::sleep(schedule::PEER_POLL).await;
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    retry_at = now + schedule::backoff(failures);
                    let msg = format!("cannot use the storage directory {}: {e}", dir.display());
                    tracing::error!(domains = ?slot.domains, error = %msg, "ACME order not started");
                    let mut status = slot.status();
                    status.failed += 1;
                    status.failures = failures;
                    status.last_error = Some(msg);
                    status.state = State::Failed;
                    continue;
                }
            }
        }
        let wait = std::time::Duration::from_secs(due - now).min(schedule::CHECK);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // A reload may have changed the settings or dropped the listener.
            r = reloads.changed() => if r.is_err() { return },
        }
    }
}

/// One order: the account, the certificate, stored and put in use. Returns the CA's renewal
/// time (ARI) when it offers one.
async fn attempt(acme: &Acme, slot: &Slot) -> Result<Option<u64>, String> {
    let account = order::account(acme).await?;
    let issued = match order::obtain(acme, slot, &account).await {
        Err(e) if e.contains("accountDoesNotExist") => {
            // The CA forgot the account (a test CA restarted): a new one next time.
            let _ = std::fs::remove_file(store::account_file(&acme.storage, &acme.directory));
            return Err(e);
        }
        other => other?,
    };
    let dir = slot.dir();
    // Checked before it is stored: a certificate that cannot be served must not replace one
    // that can.
    certs::parse(issued.chain.as_bytes(), issued.key.as_bytes())?;
    store::write_certificate(&dir, issued.chain.as_bytes(), issued.key.as_bytes())
        .map_err(|e| format!("cannot store the certificate in {}: {e}", dir.display()))?;
    slot.install(issued.chain.as_bytes(), issued.key.as_bytes())?;
    Ok(order::renewal_window(&account, &issued.chain).await)
}
