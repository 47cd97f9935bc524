//! Serving a router on a listener, with bounds on the connections themselves: how long a client
//! may take to send its headers, and how many connections one address may hold. (How long it
//! may take to send a body is the router's: `body.rs`.)
//!
//! `axum::serve` has none of these (it takes no settings by design), so a client that sends a
//! header line every few seconds would hold its connection and its memory for as long as it
//! liked. `main` and the tests serve through here alike.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Bounds on each connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, from the connection's start or the previous answer.
    pub header_timeout: Duration,
    /// Connections one client address may hold open at once.
    pub per_address: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then takes no new connection and
/// waits for the open ones to finish their requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Mutex::new(HashMap::new()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Slot::take(&open, peer.ip(), limits.per_address) else {
            tracing::debug!(address = %peer.ip(), "too many connections from one address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // hyper's header timeout starts once the first bytes are in (the protocol is told
            // by them): a connection that sends nothing at all is bounded here.
            let mut first = [0u8; 1];
            let first_bytes = tokio::time::timeout(limits.header_timeout, stream.peek(&mut first));
            if !matches!(first_bytes.await, Ok(Ok(1..))) {
                return;
            }
            let service = TowerToHyperService::new(router);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One open connection of an address, counted until it is dropped.
struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Slot {
    fn take(
        open: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        address: IpAddr,
        max: usize,
    ) -> Option<Self> {
        let mut counts = open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(address).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            open: Arc::clone(open),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}
