//! The accept loop: HTTP/1.1 connections with a header-read timeout (which also closes
//! idle keep-alive connections), a cap on connections served at once, and a graceful
//! shutdown that lets in-flight requests finish.
//!
//! HTTP/1.1 only, as before: protocol sniffing for HTTP/2 would wait for a client's first
//! bytes with no deadline, and a silent socket would hold its slot for ever.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{Router, extract::Request};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt;

use crate::{config::ConnectionLimits, rate_limit::ClientAddr};

/// A pause after a failed accept (say, out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` until `shutdown` resolves, then waits up to `grace` for in-flight
/// requests; connections still open after it are dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: at the cap, new connections wait in the listen backlog instead of
        // taking file descriptors the open ones need.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let client = ClientAddr(remote.ip());
        let service = router.clone().map_request(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(client);
            request
        });
        let connection =
            connections.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down; finishing in-flight requests");
    if tokio::time::timeout(grace, connections.shutdown()).await.is_err() {
        tracing::warn!("grace period over; dropping the remaining connections");
    }
}
