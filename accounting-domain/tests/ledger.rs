//! The ledger fed from the outbox, driven straight through the domain on both stores: every
//! event is posted once however often it is delivered, and the balance is its log's sum.

mod support;

use accounting_domain::{EntryKind, Ledger, LogFilter};
use ates_db::PageRequest;
use ates_events::NewEvent;
use ates_events::ids::{PopugId, TaskId};
use ates_events::outbox;
use ates_events::task::{TaskAssigned, TaskCompleted, TaskCreated};
use chrono::{DateTime, Utc};
use support::Store;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

async fn ledger_of(store: &Store) {
    let ctx = store.backend;
    let now = at("2026-03-01T10:00:00Z");
    let created = TaskCreated {
        task_id: "t1".into(),
        title: "feed the parrots".into(),
        jira_id: None,
        created_by: "M".into(),
        created_at: now,
    };
    let assigned = |to: &str, from: Option<&str>| TaskAssigned {
        task_id: "t1".into(),
        assignee_id: to.into(),
        previous_assignee_id: from.map(Into::into),
        assigned_at: now,
    };
    let completed = TaskCompleted {
        task_id: "t1".into(),
        completer_id: "B".into(),
        completed_at: now,
    };
    let events = [
        NewEvent::new(&created, now),
        NewEvent::new(&assigned("A", None), now),
        NewEvent::new(&assigned("B", Some("A")), now),
        NewEvent::new(&completed, now),
    ];
    let mut tx = store.db.begin_write().await.expect("begin");
    let stored = outbox::append(&mut tx, &events).await.expect("append");
    tx.commit().await.expect("commit");

    let ledger = Ledger::new(store.db.clone());
    assert_eq!(ledger.catch_up().await.expect("catch up"), 4, "{ctx}");
    // Delivered again, by the consumer and by a producer posting its own events: no effect.
    assert_eq!(ledger.catch_up().await.expect("again"), 0, "{ctx}");
    assert_eq!(ledger.post_now(&stored).await.expect("post"), 0, "{ctx}");
    for event in &stored {
        assert!(!ledger.handle(event).await.expect("handle"), "{ctx}");
    }

    let prices = ledger.prices(&[TaskId("t1".into())]).await.expect("prices");
    let prices = prices
        .get(&TaskId("t1".into()))
        .expect("priced at creation");
    assert!((10..=20).contains(&prices.assign_fee) && (20..=40).contains(&prices.reward));
    let a = ledger.balance(&PopugId("A".into())).await.expect("balance");
    let b = ledger.balance(&PopugId("B".into())).await.expect("balance");
    assert_eq!(a, -prices.assign_fee, "{ctx}: A paid one fee");
    assert_eq!(
        b,
        prices.reward - prices.assign_fee,
        "{ctx}: B paid a fee, got the reward"
    );

    let log = ledger
        .log(
            &LogFilter::default(),
            &PageRequest::forward(100, None),
            true,
        )
        .await
        .expect("log");
    let kinds: Vec<EntryKind> = log.items.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EntryKind::TaskCreated,
            EntryKind::TaskAssigned,
            EntryKind::TaskAssigned,
            EntryKind::TaskCompleted
        ],
        "{ctx}: one entry per event, in the outbox's order"
    );
    let sum_of = |popug: &str| -> i64 {
        log.items
            .iter()
            .filter(|e| e.popug_id.as_str() == popug)
            .map(|e| e.amount)
            .sum()
    };
    assert_eq!(
        (sum_of("A"), sum_of("B")),
        (a, b),
        "{ctx}: balances are their logs' sums"
    );
    let bad = ledger
        .log(
            &LogFilter::default(),
            &PageRequest::forward(1, Some("not-a-seq".into())),
            true,
        )
        .await;
    assert!(bad.is_err(), "{ctx}: a cursor the log never handed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_posted_once_however_often_it_comes() {
    on_each_store!("2026-03-01T12:00:00Z", ledger_of);
}
