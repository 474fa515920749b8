//! The accept loop: HTTP/1.1 connections with a header-read timeout (which also closes
//! idle keep-alive connections), a cap on connections served at once, and a graceful
//! shutdown that lets in-flight requests finish.
//!
//! HTTP/1.1 only, as before: protocol sniffing for HTTP/2 would wait for a client's first
//! bytes with no deadline, and a silent socket would hold its slot for ever.
//!
//! With TLS, each connection's handshake runs on the connection's own task, holding its
//! slot, and must finish within the header timeout. A plain-HTTP request sent to the TLS
//! port gets a plain `400` saying so, then the connection closes.
//!
//! Requests run on a runtime of their own. Connections and the health checks stay on the
//! caller's runtime, so CPU-bound requests that hold every worker cannot starve them: a
//! liveness probe keeps answering, and an orchestrator does not kill a busy process.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    body::Body,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::{Handle, Runtime},
    sync::Semaphore,
    task::{JoinError, JoinHandle},
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::{config::ConnectionLimits, rate_limit::ClientAddr};

/// A pause after a failed accept (say, out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Answered on the connections' runtime, never queued behind request work.
const HEALTH_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves `router` (over TLS when `tls` is given) until `shutdown` resolves, then waits up
/// to `grace` for in-flight requests; connections still open after it are dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let work = WorkRuntime::start()?;
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
        let service = TowerToHyperService::new(route(router.clone(), work.handle(), ClientAddr(remote.ip())));
        // Watched from now on: a shutdown waits for a handshake under way, and a connection
        // whose handshake ends after the signal is told to close at once.
        let watcher = connections.watcher();
        let (http, tls) = (http.clone(), tls.clone());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => match handshake(&acceptor, stream, handshake_timeout).await {
                    Some(stream) => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                    None => Ok(()),
                },
            };
            if let Err(err) = served {
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
    Ok(())
}

/// The TLS handshake of one connection, bounded by `timeout`; `None` when it fails, times
/// out, or the client spoke plain HTTP (answered with a `400`).
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let attempt = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                refuse_plain_http(stream).await;
            }
            return Ok(None);
        }
        acceptor.accept(stream).await.map(Some)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// What a plain-HTTP client gets from the TLS port: a request starts with a method's
/// capital letters, a TLS connection with [`TLS_HANDSHAKE_RECORD`]. The request's head is
/// read first (a few KiB at most), so closing does not reset the connection before the
/// client reads the answer.
async fn refuse_plain_http(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
    const BODY: &str = "This port serves HTTPS only: use an https:// URL.\n";
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < 8 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The service of one connection: health checks in place, everything else on `work`.
fn route(
    router: Router,
    work: Handle,
    client: ClientAddr,
) -> impl tower::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send> + Clone {
    tower::service_fn(move |request: Request<Incoming>| {
        let (router, work) = (router.clone(), work.clone());
        async move {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(client);
            if HEALTH_PATHS.contains(&request.uri().path()) {
                return router.oneshot(request).await;
            }
            Ok(match AbortOnDrop(work.spawn(router.oneshot(request))).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(err) => {
                    tracing::error!(error = %err, "request task failed");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            })
        }
    })
}

/// The runtime requests run on; stopped without waiting when serving ends (the grace
/// period has passed by then).
struct WorkRuntime(Option<Runtime>);

impl WorkRuntime {
    fn start() -> anyhow::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("latchkey-work")
            .enable_all()
            .build()
            .context("cannot start the request runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => Handle::current(),
        }
    }
}

impl Drop for WorkRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A request whose client went away stops at its next await, as it would on the
/// connection's own task.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_checks_answer_while_cpu_bound_requests_hold_every_worker() {
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (started_in, finished_in) = (started.clone(), finished.clone());
        let router = Router::new().route("/healthz", get(|| async { "ok" })).route(
            "/busy",
            get(move || async move {
                started_in.fetch_add(1, Ordering::SeqCst);
                // Holds its worker thread without ever yielding, as CPU-bound work does.
                std::thread::sleep(Duration::from_secs(10));
                finished_in.fetch_add(1, Ordering::SeqCst);
                "done"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits { max_connections: 64, header_timeout: Duration::from_secs(30) };
        tokio::spawn(serve(listener, router, limits, None, Duration::from_secs(1), async move {
            let _ = stopped.await;
        }));

        let client = reqwest::Client::new();
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        for _ in 0..workers + 2 {
            tokio::spawn(client.get(format!("{base}/busy")).send());
        }
        while started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let health = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(finished.load(Ordering::SeqCst), 0, "/healthz waited for the busy requests");
        let _ = stop.send(());
    }
}
