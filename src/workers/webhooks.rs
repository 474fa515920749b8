//! The webhook worker: on every replica, claims due deliveries (see
//! [`crate::domain::webhooks::deliveries`]), signs each in the Standard Webhooks format
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`), sends it through
//! [`Outbound`] and records the attempt. Every [`expiry::SCAN_INTERVAL`] it also runs the
//! `authentication.expiring` scan and purges finished deliveries past their retention.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook};
use tokio::task::JoinSet;

use super::StopSignal;
use crate::{
    crypto::KeyringHandle,
    domain::webhooks::{
        RetrySchedule,
        deliveries::{self, Claimed, ErrorClass, Outcome, Outgoing},
        expiry,
    },
    error::Error,
    outbound::{Outbound, OutboundError},
};

/// How often an idle replica looks for due deliveries.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a claim keeps a delivery from other replicas: more than a call may take
/// ([`crate::outbound`] gives up after 15 s), with room to record the result. A replica
/// killed mid-delivery delays that delivery by at most this much.
pub const LEASE: Duration = Duration::from_secs(30);
/// Deliveries one replica claims and sends at once.
const BATCH: u64 = 16;

/// What the operator may tune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `LATCHKEY_WEBHOOK_RETRY_SCHEDULE`.
    pub schedule: RetrySchedule,
    /// `LATCHKEY_WEBHOOK_EXPIRING_DAYS`: how long before a hard expiry to warn.
    pub expiring_within: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { schedule: RetrySchedule::default(), expiring_within: Duration::from_secs(7 * 24 * 3600) }
    }
}

pub struct WebhookWorker {
    pub db: DatabaseConnection,
    pub keyring: Arc<KeyringHandle>,
    pub outbound: Outbound,
    pub settings: WebhookSettings,
}

impl WebhookWorker {
    /// Runs until `stop` says so, finishing the deliveries in flight first.
    pub async fn run(self, mut stop: StopSignal) {
        let worker = Arc::new(self);
        let mut housekeeping_at = Instant::now();
        while !stop.stopping() {
            if Instant::now() >= housekeeping_at {
                worker.housekeeping().await;
                housekeeping_at = Instant::now() + expiry::SCAN_INTERVAL;
            }
            let sent = match worker.send_due().await {
                Ok(sent) => sent,
                Err(err) => {
                    log_failure("cannot claim webhook deliveries", &err);
                    0
                }
            };
            // Claimed work may have unblocked the next event of a subject: look again at once.
            if sent == 0 && stop.sleep(POLL_INTERVAL).await {
                break;
            }
        }
    }

    async fn send_due(self: &Arc<Self>) -> Result<usize, Error> {
        let claimed = deliveries::claim(&self.db, BATCH, LEASE).await?;
        let count = claimed.len();
        let mut sending = JoinSet::new();
        for claim in claimed {
            let worker = self.clone();
            sending.spawn(async move { worker.deliver(claim).await });
        }
        while sending.join_next().await.is_some() {}
        Ok(count)
    }

    async fn deliver(&self, claimed: Claimed) {
        let outcome = match deliveries::outgoing(&self.db, &self.keyring, &claimed).await {
            Ok(Some(outgoing)) => self.send(&outgoing).await,
            Ok(None) => return,
            Err(err) => {
                log_failure("cannot prepare a webhook delivery", &err);
                Outcome::failed(Utc::now(), Duration::ZERO, ErrorClass::Internal)
            }
        };
        tracing::debug!(
            delivery = %claimed.delivery_id,
            attempt = claimed.attempt,
            status = outcome.http_status,
            error = outcome.error_class.map(ErrorClass::as_str),
            "webhook attempt"
        );
        match deliveries::record(&self.db, &self.settings.schedule, &claimed, &outcome).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %claimed.delivery_id, "a webhook attempt was not recorded: its lease ran out or its endpoint was removed meanwhile")
            }
            Err(err) => log_failure("cannot record a webhook attempt", &err),
        }
    }

    async fn send(&self, outgoing: &Outgoing) -> Outcome {
        let attempted_at = Utc::now();
        let started = Instant::now();
        let request = match signed_request(outgoing, attempted_at.timestamp()) {
            Ok(request) => request,
            Err(class) => return Outcome::failed(attempted_at, started.elapsed(), class),
        };
        match self.outbound.send(request).await {
            Ok(answer) => Outcome::answered(attempted_at, started.elapsed(), answer.status().as_u16(), answer.body()),
            Err(err) => Outcome::failed(attempted_at, started.elapsed(), class_of(&err)),
        }
    }

    async fn housekeeping(&self) {
        match expiry::scan(&self.db, Utc::now(), self.settings.expiring_within).await {
            Ok(0) => {}
            Ok(reported) => tracing::info!(reported, "authentications nearing their hard expiry reported"),
            Err(err) => log_failure("cannot scan for expiring authentications", &err),
        }
        if let Err(err) = deliveries::purge(&self.db, Utc::now() - deliveries::RETENTION).await {
            log_failure("cannot purge old webhook deliveries", &err);
        }
    }
}

/// The signed request of one attempt. Each signing key (the current secret, and the
/// previous one during its grace) adds a `v1,` signature, space-separated.
fn signed_request(outgoing: &Outgoing, timestamp: i64) -> Result<http::Request<Vec<u8>>, ErrorClass> {
    let id = outgoing.event_id.to_string();
    let signatures = outgoing
        .keys
        .iter()
        .map(|key| {
            let webhook = Webhook::from_bytes(key.expose().clone()).map_err(|_| ErrorClass::Internal)?;
            webhook.sign(&id, timestamp, outgoing.payload.as_bytes()).map_err(|_| ErrorClass::Internal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    http::Request::post(outgoing.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(HEADER_WEBHOOK_ID, id)
        .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
        .header(HEADER_WEBHOOK_SIGNATURE, signatures.join(" "))
        .body(outgoing.payload.clone().into_bytes())
        .map_err(|_| ErrorClass::InvalidUrl)
}

fn class_of(err: &OutboundError) -> ErrorClass {
    match err {
        OutboundError::BadUrl(_) => ErrorClass::InvalidUrl,
        OutboundError::Refused { .. } => ErrorClass::RefusedAddress,
        OutboundError::Timeout { .. } => ErrorClass::Timeout,
        OutboundError::Transport { .. } => ErrorClass::Connect,
        OutboundError::TooLarge { .. } => ErrorClass::AnswerTooLarge,
    }
}

fn log_failure(what: &str, err: &Error) {
    match err {
        Error::Internal(cause) => tracing::error!(error = %format!("{cause:#}"), "{what}"),
        other => tracing::error!(error = %other, "{what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sensitive;

    #[test]
    fn a_request_verifies_with_every_key_it_is_signed_with() {
        let (current, previous) = (vec![1u8; 32], vec![2u8; 32]);
        let outgoing = Outgoing {
            event_id: uuid::Uuid::now_v7(),
            url: "https://hooks.example.com/in".into(),
            payload: r#"{"type":"authentication.created"}"#.into(),
            keys: vec![Sensitive::new(current.clone()), Sensitive::new(previous.clone())],
        };
        let request = signed_request(&outgoing, Utc::now().timestamp()).unwrap();
        assert_eq!(request.headers()[HEADER_WEBHOOK_ID], outgoing.event_id.to_string());
        for key in [current, previous] {
            Webhook::from_bytes(key).unwrap().verify(request.body(), request.headers()).expect("verifies");
        }
        let stranger = Webhook::from_bytes(vec![3u8; 32]).unwrap();
        assert!(stranger.verify(request.body(), request.headers()).is_err());
    }
}
