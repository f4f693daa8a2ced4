//! One ACME order (RFC 8555 §7.4) with instant-acme: the account (stored, or created once), the
//! challenges answered through the slot and the storage directory, the certificate.

use crate::certs::{self, store, Slot};
use crate::config::model::{Acme, Challenge};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use std::time::Duration;

/// A certificate as issued: the PEM chain (leaf first) and its key.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

/// How long the CA gets to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

fn problem(what: &str, e: instant_acme::Error) -> String {
    format!("{what}: {e}")
}

/// The account for `acme`'s directory: the stored one, or a new one stored for next time (its
/// key is the account: losing it only means a new account, never a lost certificate).
pub async fn account(acme: &Acme) -> Result<Account, String> {
    let builder = || {
        match &acme.ca_roots {
            Some(roots) => Account::builder_with_root(roots),
            None => Account::builder(),
        }
        .map_err(|e| problem("cannot set up the HTTPS client", e))
    };
    let file = store::account_file(&acme.storage, &acme.directory);
    if let Ok(json) = std::fs::read(&file) {
        if let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&json) {
            return builder()?.from_credentials(credentials).await.map_err(|e| {
                problem(
                    &format!("cannot reach the ACME directory {}", acme.directory),
                    e,
                )
            });
        }
    }
    let contact = acme.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = acme
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac));
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| {
            problem(
                &format!("cannot create the ACME account at {}", acme.directory),
                e,
            )
        })?;
    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    store::write_private(&file, &json)
        .map_err(|e| format!("cannot store the account in {}: {e}", file.display()))?;
    tracing::info!(directory = %acme.directory, account = %account.id(), "ACME account created");
    Ok(account)
}

/// Order a certificate for `acme.domains`, answering each authorization's challenge through
/// `slot` (this replica) and the storage directory (any replica sharing it).
pub async fn obtain(acme: &Acme, slot: &Slot, account: &Account) -> Result<Issued, String> {
    let ids: Vec<Identifier> = acme
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| problem("the CA refused the order", e))?;
    let dir = slot.dir();
    let kind = match acme.challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| problem("cannot read an authorization", e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                // Validated recently for this account: nothing to answer.
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("an authorization is {other:?}")),
            }
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                format!(
                    "the CA offers no {} challenge; set `challenge:` to another",
                    acme.challenge.name()
                )
            })?;
            let name = challenge.identifier().to_string().to_ascii_lowercase();
            let answer = challenge.key_authorization();
            match acme.challenge {
                Challenge::Http01 => {
                    store::write_http_challenge(&dir, &challenge.token, answer.as_str())
                        .map_err(|e| format!("cannot store the challenge answer: {e}"))?;
                    slot.put_http(&challenge.token, answer.as_str());
                }
                Challenge::TlsAlpn01 => {
                    let (cert, key) = alpn_certificate(&name, answer.digest().as_ref())?;
                    store::write_alpn_challenge(&dir, &name, &cert, &key)
                        .map_err(|e| format!("cannot store the challenge answer: {e}"))?;
                    let (certified, _, _) = certs::parse(cert.as_bytes(), key.as_bytes())?;
                    slot.put_alpn(&name, certified);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| problem("the CA did not take the challenge", e))?;
        }
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| problem("validation did not finish", e))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order, status).await);
    }
    let key = order
        .finalize()
        .await
        .map_err(|e| problem("the CA refused to finalize the order", e))?;
    let chain = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| problem("the certificate did not arrive", e))?;
    Ok(Issued { chain, key })
}

/// The CA's reason for an order that did not become ready (the failed challenge's error, which
/// says what the CA saw: a refused connection, a wrong answer).
async fn why_invalid(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    if let Some(e) = &order.state().error {
        reasons.push(e.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(e) = &c.error {
                reasons.push(format!("{}: {e}", authz.identifier()));
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("no reason given".into());
    }
    format!("the order is {status:?}: {}", reasons.join("; "))
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737 §3): self-signed, that one name, and the
/// critical acmeIdentifier extension holding the key authorization's SHA-256.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A time in the CA's renewal window for `chain`'s leaf (ARI, RFC 9773), when the CA offers
/// one; `None` otherwise (the loop then renews at two thirds).
pub async fn renewal_window(account: &Account, chain: &str) -> Option<u64> {
    let leaf: CertificateDer<'static> =
        rustls_pemfile::certs(&mut chain.as_bytes()).next()?.ok()?;
    let id = CertificateIdentifier::try_from(&leaf).ok()?;
    let (info, _) = account.renewal_info(&id).await.ok()?;
    let start = info.suggested_window.start.unix_timestamp().max(0) as u64;
    let end = info.suggested_window.end.unix_timestamp().max(0) as u64;
    Some(super::schedule::in_window(
        start,
        end,
        rand::random::<f64>(),
    ))
}
