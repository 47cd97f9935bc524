//! Forgets idempotency keys once they expire, on every replica (a delete of what has expired
//! is the same whoever runs it).

use std::time::Duration;

use ates_db::Db;

use super::poller::{Poller, Round};

/// Runs the sweep every `every` until the runtime stops.
pub fn spawn(db: Db, every: Duration) {
    let poller = Poller::new("forgetting expired idempotency keys", every);
    tokio::spawn(async move {
        poller
            .run(|| async {
                let forgotten = ates_db::idempotency::sweep(&db).await?;
                if forgotten > 0 {
                    tracing::debug!(forgotten, "expired idempotency keys forgotten");
                }
                Ok::<_, ates_db::SqlError>(Round::Idle)
            })
            .await
    });
}
