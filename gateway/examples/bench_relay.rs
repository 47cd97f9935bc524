//! The relay from the outbox to NATS JetStream.
//!
//! 1. Throughput: 20,000 events already in the outbox, published by `nats::relay_batch` until
//!    none is left (each event is sent after the one before it was acknowledged).
//! 2. Lag after an outage: events are written at 200 per second to the outbox while the
//!    relay runs against a `nats-server` of the bench's own. That server is stopped for 30 s,
//!    then started again; reported is the backlog at the restart and the time from the restart
//!    until the relay has published everything written so far.
//!
//! cargo run --release -p gateway --example bench_relay -- [postgres://…/postgres]
//!
//! Needs `nats-server` on the PATH (the one on 127.0.0.1:4222 is not touched).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ates_db::Db;
use ates_events::NewEvent;
use chrono::Utc;
use gateway::workers::nats::{self, Broker, RELAY};
use serde_json::json;

const EVENTS: usize = 20_000;
const RATE: u64 = 200;
const OUTAGE: Duration = Duration::from_secs(30);

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::on_fresh_database(|backend, url, _| async move { bench(backend, &url).await }).await
}

/// A JetStream server of the bench's own, on a free port.
struct Server {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut server = Self {
            port,
            store: tempfile::tempdir()?,
            child: None,
        };
        server.run()?;
        Ok(server)
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn broker(url: String) -> Broker {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    Broker {
        url,
        stream: format!("BENCH{tag}"),
        subject_prefix: format!("bench{tag}"),
        auth_subject: format!("benchauth{tag}.>"),
        auth_stream: format!("BENCHAUTH{tag}"),
        durable: "bench".into(),
    }
}

/// Appends `count` task-created-like events, 500 per transaction.
async fn write_events(db: &Db, count: usize) -> anyhow::Result<()> {
    let events: Vec<NewEvent> = (0..count)
        .map(|i| NewEvent {
            id: uuid::Uuid::now_v7(),
            event_type: "task.created",
            version: 1,
            aggregate_id: format!("task-{i}"),
            payload: json!({ "taskId": format!("task-{i}"), "title": "Feed the parrots",
                             "jiraId": null, "createdBy": "bench", "createdAt": Utc::now().to_rfc3339() }),
            occurred_at: Utc::now(),
        })
        .collect();
    for chunk in events.chunks(500) {
        let mut tx = db.begin_write().await?;
        ates_events::outbox::append(&mut tx, chunk).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Events the relay has not published yet.
async fn lag(db: &Db) -> anyhow::Result<i64> {
    Ok(ates_events::outbox::backlog(db, RELAY).await?.waiting)
}

async fn bench(backend: &str, url: &str) -> anyhow::Result<()> {
    let db = Db::connect(url, 8).await?;
    db.migrate().await?;
    let mut server = Server::start()?;
    let broker = broker(format!("nats://127.0.0.1:{}", server.port));
    let js = nats::connect(&broker.url).await?;

    // 1. Throughput.
    write_events(&db, EVENTS).await?;
    broker.ensure_stream(&js).await?;
    let started = Instant::now();
    let mut published = 0;
    while published < EVENTS {
        published += nats::relay_batch(&broker, &js, &db).await?;
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: {EVENTS} events from the outbox to JetStream in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64()
    );

    // 2. Lag after a 30 s outage, with events written all along.
    tokio::spawn(nats::relay(broker.clone(), js.clone(), db.clone()));
    let writer_db = db.clone();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / (RATE / 10)));
        loop {
            tick.tick().await;
            if write_events(&writer_db, 10).await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let lag_before = lag(&db).await?;
    server.stop();
    tokio::time::sleep(OUTAGE).await;
    server.run()?;
    let restarted = Instant::now();
    let backlog = lag(&db).await?;
    // Caught up: no more behind than the writer puts in between two looks.
    while lag(&db).await? > RATE as i64 / 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = restarted.elapsed();
    // And steady again: the lag behind the writer a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lag_after = lag(&db).await?;
    writer.abort();
    println!(
        "{backend}: writing {RATE} events/s; lag before the outage {lag_before} events; \
         {:.0} s outage left {backlog} events behind; all published {:.2} s after the broker \
         was back; lag 3 s later {lag_after} events",
        OUTAGE.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    Ok(())
}
