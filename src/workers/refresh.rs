//! The refresh worker: on every replica, runs a pass of the keep-alive
//! ([`Refresher::pass`]) every `LATCHKEY_REFRESH_INTERVAL`. Refreshes are claimed in the
//! database, so replicas share them and each expiry is renewed once.

use std::time::Duration;

use super::StopSignal;
use crate::domain::refresh::Refresher;

/// Runs a pass every `interval` until `stop` says so; a pass under way finishes first.
pub async fn run(refresher: Refresher, interval: Duration, mut stop: StopSignal) {
    while !stop.sleep(interval).await {
        match refresher.pass().await {
            Ok(0) => {}
            Ok(refreshed) => tracing::debug!(refreshed, "background refresh pass"),
            Err(err) => tracing::error!(error = ?err, "the background refresh pass failed"),
        }
    }
}
