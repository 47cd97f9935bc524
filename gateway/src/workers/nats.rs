//! The company's message broker: NATS JetStream.
//!
//! Out: the relay publishes every outbox event, in `seq` order, to
//! `<prefix>.<type>.v<version>` with the event id as `Nats-Msg-Id`, so the broker drops a
//! repeat. An event is sent only after the one before it was acknowledged, so the stream holds
//! them in outbox order even across a broker outage; the offset is saved after the broker's
//! acknowledgement, so a restart re-sends at most the last batch (dropped as duplicates).
//!
//! In: a durable pull consumer, shared by the replicas, hands Popug Data Updated to
//! [`AuthEvents::handle`]. A message that can never be applied is parked in `dead_letters`
//! and terminated, so it does not block the messages behind it; a storage failure asks for
//! redelivery.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use ates_db::{Db, HeldLock, Lock, SqlError};
use ates_events::dead_letter;
use ates_events::outbox::{self, StoredEvent};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;

use super::poller::{Backoff, Poller, Round};
use crate::auth_events::{AuthEvents, HandleError};
use crate::config::Config;

/// The relay's row in `consumer_offsets`.
pub const RELAY: &str = "nats-relay";

/// Outbox events read per round trip to the database.
const BATCH: i64 = 500;

/// How long the relay sleeps when the outbox has nothing new.
const IDLE: Duration = Duration::from_millis(100);

/// How often a replica that does not relay looks whether the one that does has stopped.
const STANDBY: Duration = Duration::from_secs(1);

/// Pauses between attempts while the broker or database is unreachable.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

/// Where our events go and the auth service's come from.
#[derive(Debug, Clone)]
pub struct Broker {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub auth_subject: String,
    pub auth_stream: String,
    pub durable: String,
}

impl Broker {
    pub fn from_config(config: &Config) -> Option<Self> {
        Some(Self {
            url: config.broker.nats_url.clone()?,
            stream: config.broker.nats_stream.clone(),
            subject_prefix: config.broker.nats_subject_prefix.clone(),
            auth_subject: config.broker.nats_auth_subject.clone(),
            auth_stream: config.broker.nats_auth_stream.clone(),
            durable: config.broker.nats_durable.clone(),
        })
    }

    /// The subject of an event: `<prefix>.<type>.v<version>`.
    pub fn subject(&self, event: &StoredEvent) -> String {
        format!(
            "{}.{}.v{}",
            self.subject_prefix, event.event_type, event.version
        )
    }

    /// Creates our stream, capturing `<prefix>.>`, when it is missing.
    pub async fn ensure_stream(&self, js: &jetstream::Context) -> anyhow::Result<()> {
        ensure_stream(js, &self.stream, &format!("{}.>", self.subject_prefix)).await
    }

    /// Connects (in the background when the broker is down: the client keeps retrying) and
    /// starts the relay and the auth consumer.
    pub async fn start(self, db: Db, auth_events: AuthEvents) -> anyhow::Result<()> {
        let js = connect(&self.url).await?;
        tokio::spawn(relay(self.clone(), js.clone(), db.clone()));
        tokio::spawn(async move {
            let poller = Poller::new("consuming auth events", IDLE).with_backoff(BACKOFF);
            poller
                .run(|| async {
                    consume_until_error(&self, &js, &db, &auth_events).await?;
                    anyhow::Ok(Round::Idle)
                })
                .await
        });
        Ok(())
    }
}

/// A JetStream context on `url`. The connection is made, and remade after an outage, in the
/// background, at most a second apart, so the relay resumes soon after the broker is back.
pub async fn connect(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("ates-gateway")
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1000))
        })
        .connect(url)
        .await
        .with_context(|| format!("ATES_NATS_URL {url:?} is not a NATS address"))?;
    Ok(jetstream::new(client))
}

/// One relay at a time across replicas ([`Lock::Relay`], PostgreSQL): a session lock on a
/// connection the relay keeps, so it goes with the process, or with the connection. Without it
/// the order would still hold within the broker's duplicate window, but a relay stalled longer
/// than that window could publish an old event again.
async fn hold_relay_lock(db: &Db, held: &mut Option<HeldLock>) -> Result<bool, SqlError> {
    if let Some(lock) = held {
        if lock.is_held().await {
            return Ok(true);
        }
        // The connection, and the lock with it, is gone.
        *held = None;
    }
    *held = db.try_lock_session(Lock::Relay).await?;
    if held.is_some() {
        tracing::info!("this replica relays the outbox to NATS");
    }
    Ok(held.is_some())
}

/// Publishes the outbox, forever (on one replica at a time).
pub async fn relay(broker: Broker, js: jetstream::Context, db: Db) {
    let relay = Relay {
        broker,
        js,
        db,
        lock: tokio::sync::Mutex::new(None),
        stream_ready: AtomicBool::new(false),
    };
    let poller = Poller::new("relaying the outbox to NATS", IDLE).with_backoff(BACKOFF);
    poller.run(|| relay.round()).await
}

struct Relay {
    broker: Broker,
    js: jetstream::Context,
    db: Db,
    lock: tokio::sync::Mutex<Option<HeldLock>>,
    stream_ready: AtomicBool,
}

impl Relay {
    async fn round(&self) -> anyhow::Result<Round> {
        let holds = hold_relay_lock(&self.db, &mut *self.lock.lock().await)
            .await
            .context("taking the relay lock")?;
        if !holds {
            // Another replica relays; take over soon after it stops.
            return Ok(Round::Later(STANDBY));
        }
        if !self.stream_ready.load(Ordering::Relaxed) {
            self.broker
                .ensure_stream(&self.js)
                .await
                .context("JetStream stream unavailable")?;
            self.stream_ready.store(true, Ordering::Relaxed);
        }
        let published = relay_batch(&self.broker, &self.js, &self.db).await?;
        Ok(if published > 0 {
            Round::More
        } else {
            Round::Idle
        })
    }
}

/// Publishes the next batch of the outbox; how many events it published.
pub async fn relay_batch(
    broker: &Broker,
    js: &jetstream::Context,
    db: &Db,
) -> anyhow::Result<usize> {
    let after = outbox::offset(db.pool(), RELAY).await?;
    let events = {
        let mut conn = db.pool().acquire().await?;
        outbox::read_after(&mut conn, after, BATCH).await?
    };
    let mut published = 0;
    let result = async {
        for event in &events {
            publish(broker, js, event).await?;
            published += 1;
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever was acknowledged is saved, even when the batch stopped half-way.
    if published > 0 {
        outbox::advance(db.pool(), RELAY, events[published - 1].position()).await?;
    }
    result.map(|()| published)
}

/// Sends one event and waits for the broker to store it (or to say it had it already).
async fn publish(
    broker: &Broker,
    js: &jetstream::Context,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    let body = json!({
        "type": event.event_type,
        "version": event.version,
        "id": event.id,
        "occurredAt": event.occurred_at.to_rfc3339(),
        "aggregateId": event.aggregate_id,
        "data": event.payload,
    });
    let message = jetstream::message::PublishMessage::build()
        .payload(Bytes::from(body.to_string()))
        .message_id(&event.id)
        .header("Ates-Event-Type", event.event_type.as_str())
        .header("Ates-Event-Version", event.version.to_string().as_str())
        .header("Ates-Outbox-Seq", event.seq.to_string().as_str());
    js.send_publish(broker.subject(event), message)
        .await
        .with_context(|| format!("sending outbox event {}", event.seq))?
        .await
        .with_context(|| format!("acknowledgement of outbox event {}", event.seq))?;
    Ok(())
}

/// Creates the stream when it is missing: file storage, the default two-minute window in
/// which a repeated `Nats-Msg-Id` is dropped.
async fn ensure_stream(js: &jetstream::Context, name: &str, subject: &str) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("stream {name} for {subject}"))?;
    Ok(())
}

/// Consumes Popug Data Updated until the stream ends or fails.
async fn consume_until_error(
    broker: &Broker,
    js: &jetstream::Context,
    db: &Db,
    auth_events: &AuthEvents,
) -> anyhow::Result<()> {
    // The auth service's stream when it has one; else ours, capturing its subject.
    let stream = match js.stream_by_subject(broker.auth_subject.as_str()).await {
        Ok(name) => js.get_stream(name).await?,
        Err(_) => {
            ensure_stream(js, &broker.auth_stream, &broker.auth_subject).await?;
            js.get_stream(&broker.auth_stream).await?
        }
    };
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &broker.durable,
            consumer::pull::Config {
                durable_name: Some(broker.durable.clone()),
                filter_subject: broker.auth_subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .context("durable consumer")?;
    let mut messages = consumer.messages().await.context("pulling messages")?;
    while let Some(message) = messages.next().await {
        let message = message.context("receiving a message")?;
        let ack = match auth_events.handle(&message.payload).await {
            Ok(_) => AckKind::Ack,
            Err(HandleError::Bad(reason)) => {
                tracing::warn!(subject = %message.subject, %reason, "auth event parked as a dead letter");
                match dead_letter::park(
                    db,
                    "nats",
                    &message.subject,
                    &message.payload,
                    &reason.to_string(),
                )
                .await
                {
                    Ok(()) => AckKind::Term,
                    Err(error) => {
                        tracing::error!(%error, "cannot park a dead letter");
                        AckKind::Nak(Some(Duration::from_secs(5)))
                    }
                }
            }
            Err(HandleError::Storage(error)) => {
                tracing::error!(error = ?error, "auth event not applied; asking for redelivery");
                AckKind::Nak(Some(Duration::from_secs(1)))
            }
        };
        // `double_ack` waits for the broker to confirm, so an acknowledged message is never
        // delivered again.
        message
            .double_ack_with(ack)
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
    }
    Ok(())
}
