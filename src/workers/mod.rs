//! Background work every replica runs beside serving requests, started with the server
//! and stopped on its graceful shutdown. Work is claimed in the database, so replicas
//! share it without talking to each other.

pub mod refresh;
pub mod webhooks;

use std::time::Duration;

use tokio::{sync::watch, task::JoinHandle};

/// Tells the workers to stop, and waits for them.
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

/// What a worker watches to know when to stop.
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    pub fn stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Sleeps for `pause`; true when woken early because the workers are stopping.
    pub async fn sleep(&mut self, pause: Duration) -> bool {
        if self.stopping() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => self.stopping(),
            _ = self.0.changed() => true,
        }
    }
}

impl Workers {
    pub fn new() -> (Self, StopSignal) {
        let (stop, signal) = watch::channel(false);
        (Self { stop, handles: Vec::new() }, StopSignal(signal))
    }

    pub fn spawn(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.handles.push(tokio::spawn(work));
    }

    /// Asks every worker to stop and waits up to `grace` for them to finish what they
    /// were doing; what is still running then is dropped (claimed work stays leased and
    /// another replica, or the next start, takes it up when the lease ends).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.handles.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(grace, join_all(self.handles)).await.is_err() {
            tracing::warn!("background work did not stop within the grace period");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

async fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        if let Err(err) = handle.await
            && err.is_panic()
        {
            tracing::error!("a background worker panicked");
        }
    }
}
