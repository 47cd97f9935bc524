//! Popug Data Updated from the auth service, whichever way it comes (`POST /auth/events`, or
//! the JetStream consumer of `workers::nats`): checked, applied to the popug replica, and the
//! sessions of a deactivated popug ended.

use std::sync::Arc;

use ates_events::auth::{BadEvent, PopugDataUpdated};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use task_domain::{EventOutcome, Popugs, TaskError};
use tokio::sync::broadcast;

/// Header carrying `sha256=<hex>`: HMAC-SHA256 of the raw body under the shared secret.
pub const SIGNATURE_HEADER: &str = "x-ates-signature";

/// The role a token must carry to post events instead of signing them.
pub const SERVICE_ROLE: &str = "service";

/// Popugs whose open sessions must end, told to every WebSocket of this replica.
#[derive(Clone)]
pub struct Revocations(broadcast::Sender<Arc<str>>);

impl Revocations {
    pub fn new() -> Self {
        Self(broadcast::channel(1024).0)
    }

    pub fn revoke(&self, popug_id: &str) {
        // Nobody listening is fine: no socket is open.
        let _ = self.0.send(Arc::from(popug_id));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.subscribe()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The sender's fault; sending it again will not help.
    #[error(transparent)]
    Bad(#[from] BadEvent),
    /// Ours: the message may be delivered again later.
    #[error("storage failure")]
    Storage(#[source] TaskError),
}

/// Parses, checks and applies auth events to the popug replica.
#[derive(Clone)]
pub struct AuthEvents {
    popugs: Popugs,
    revocations: Revocations,
}

impl AuthEvents {
    pub fn new(popugs: Popugs, revocations: Revocations) -> Self {
        Self {
            popugs,
            revocations,
        }
    }

    pub async fn handle(
        &self,
        body: &[u8],
    ) -> Result<(PopugDataUpdated, EventOutcome), HandleError> {
        let event = PopugDataUpdated::parse(body)?;
        let outcome = self
            .popugs
            .apply(&event)
            .await
            .map_err(HandleError::Storage)?;
        if let EventOutcome::Applied { revoked: true } = outcome {
            self.revocations.revoke(&event.popug_id);
        }
        tracing::info!(
            event_id = %event.id,
            event_type = event.event_type,
            popug = %event.popug_id,
            outcome = outcome.as_str(),
            "auth event handled"
        );
        Ok((event, outcome))
    }
}

/// True when `signature` (`sha256=<hex>`) is the body's HMAC under `secret`; compared in
/// constant time.
pub fn signature_is_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` for `body`: what the auth service sends.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let signed = sign(b"secret", b"{}");
        assert!(signature_is_valid(b"secret", b"{}", &signed));
        assert!(!signature_is_valid(b"other", b"{}", &signed));
        assert!(!signature_is_valid(b"secret", b"{ }", &signed));
        assert!(!signature_is_valid(b"secret", b"{}", &signed[7..]));
        assert!(!signature_is_valid(b"secret", b"{}", "sha256=zz"));
    }
}
