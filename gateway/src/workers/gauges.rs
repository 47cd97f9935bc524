//! The database's figures for `/metrics`, read on an interval of their own: a scrape renders
//! what was read last and touches no database, however often, or by whom, it comes.

use std::time::Duration;

use accounting_domain::{CONSUMER as ACCOUNTING, Queues};
use ates_db::Db;

use super::nats::RELAY;
use super::poller::{Backoff, Poller};
use crate::metrics::{self, DatabaseFigures};

/// How often the database's figures are read.
pub const EVERY: Duration = Duration::from_secs(10);

/// Reads the figures now and then every `every`, until the runtime stops. `relays`: whether
/// this replica relays the outbox to NATS, so its backlog is one of the figures.
pub fn spawn(db: Db, queues: Queues, relays: bool, every: Duration) {
    let poller =
        Poller::new("reading the database's figures for /metrics", every).with_backoff(Backoff {
            first: every,
            max: every,
        });
    tokio::spawn(async move {
        poller
            .run(|| async {
                match figures(&db, &queues, relays).await {
                    Ok(figures) => {
                        metrics::record_database(Some(&figures));
                        Ok(super::poller::Round::Idle)
                    }
                    Err(error) => {
                        metrics::record_database(None);
                        Err(anyhow::anyhow!(error))
                    }
                }
            })
            .await
    });
}

/// The pool's use, each outbox consumer's backlog, and the payouts by status.
async fn figures(
    db: &Db,
    queues: &Queues,
    relays: bool,
) -> Result<DatabaseFigures<'static>, Box<dyn std::error::Error + Send + Sync>> {
    let pool = db.pool();
    let mut consumers = vec![ACCOUNTING];
    if relays {
        consumers.push(RELAY);
    }
    let now = db.now();
    let mut backlogs = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let backlog = ates_events::outbox::backlog(db, consumer).await?;
        let age = backlog.oldest.map_or(Duration::ZERO, |at| {
            (now - at).to_std().unwrap_or(Duration::ZERO)
        });
        backlogs.push((consumer, backlog.waiting, age));
    }
    let payouts = queues
        .payouts_by_status()
        .await?
        .into_iter()
        .map(|(status, count)| (status.as_str(), count))
        .collect();
    Ok(DatabaseFigures {
        pool: (pool.size(), pool.num_idle()),
        backlogs,
        payouts,
    })
}
