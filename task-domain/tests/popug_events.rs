//! The ordering and idempotency rules of Popug Data Updated, on the replica itself, on both
//! stores: an event applies once, never over a newer state (from an event or a token), and
//! deletion is final. Concurrent deliveries end in the state of the newest event.

use ates_db::Db;
use ates_db::testing::Scratch;
use ates_events::auth::{PopugChange, PopugDataUpdated};
use chrono::{DateTime, Duration, Utc};
use task_domain::{EventOutcome, PopugClaims, PopugId, Popugs, Role, TaskError};

fn event(popug: &str, at: DateTime<Utc>, change: PopugChange) -> PopugDataUpdated {
    PopugDataUpdated {
        id: uuid::Uuid::new_v4().to_string(),
        event_type: match change {
            PopugChange::Deleted => "popug.deleted",
            PopugChange::Upserted { .. } => "popug.updated",
        },
        version: 1,
        occurred_at: at,
        popug_id: popug.to_owned(),
        change,
    }
}

fn named(name: &str, role: &str) -> PopugChange {
    PopugChange::Upserted {
        name: name.to_owned(),
        email: None,
        role: role.to_owned(),
    }
}

/// Applies each event on its own task, all at once; their outcomes.
async fn all_at_once(popugs: &Popugs, events: Vec<PopugDataUpdated>) -> Vec<EventOutcome> {
    let handles: Vec<_> = events
        .into_iter()
        .map(|event| {
            let popugs = popugs.clone();
            tokio::spawn(async move { popugs.apply(&event).await.expect("applied") })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("the task finishes"));
    }
    outcomes
}

async fn rules(db: Db) {
    let popugs = Popugs::new(db.clone());
    let t0 = Utc::now() - Duration::hours(1);
    let id = PopugId("p1".into());
    let current = |popugs: &Popugs| {
        let popugs = popugs.clone();
        async move { popugs.get(&PopugId("p1".into())).await.unwrap().unwrap() }
    };

    let first = event("p1", t0, named("Ann", "worker"));
    assert_eq!(
        popugs.apply(&first).await.unwrap(),
        EventOutcome::Applied { revoked: false }
    );
    assert_eq!(popugs.apply(&first).await.unwrap(), EventOutcome::Duplicate);
    let later = event("p1", t0 + Duration::seconds(20), named("Anna", "manager"));
    assert_eq!(
        popugs.apply(&later).await.unwrap(),
        EventOutcome::Applied { revoked: true },
        "a new role ends the popug's sessions"
    );
    let older = event("p1", t0 + Duration::seconds(10), named("Annie", "admin"));
    assert_eq!(popugs.apply(&older).await.unwrap(), EventOutcome::Stale);
    assert_eq!(current(&popugs).await.name, "Anna");

    // A token issued after the last event wins over an event older than the token.
    let token = PopugClaims {
        id: id.clone(),
        name: "Anya".into(),
        email: None,
        role: Role::Accountant,
        issued_at: t0 + Duration::seconds(40),
    };
    assert_eq!(popugs.sync(&token).await.unwrap().name, "Anya");
    let between = event(
        "p1",
        t0 + Duration::seconds(30),
        named("Anastasia", "worker"),
    );
    assert_eq!(popugs.apply(&between).await.unwrap(), EventOutcome::Stale);
    assert_eq!(current(&popugs).await.role, Role::Accountant);

    // Deletion is final, whatever its time; no event or token brings the popug back.
    let deleted = event("p1", t0 + Duration::seconds(5), PopugChange::Deleted);
    assert_eq!(
        popugs.apply(&deleted).await.unwrap(),
        EventOutcome::Applied { revoked: true }
    );
    let revived = event("p1", t0 + Duration::seconds(90), named("Ann", "admin"));
    assert_eq!(popugs.apply(&revived).await.unwrap(), EventOutcome::Stale);
    let fresh_token = PopugClaims {
        issued_at: t0 + Duration::seconds(100),
        ..token
    };
    assert!(matches!(
        popugs.sync(&fresh_token).await,
        Err(TaskError::Deactivated)
    ));
    let popug = current(&popugs).await;
    assert!(!popug.active);
    assert_eq!(
        popug.name, "Anya",
        "the deactivated popug keeps its last state"
    );

    // Concurrent deliveries: the same event eight times applies once; eight different events
    // end in the newest one's state, whatever order they land in.
    let twice = event("p2", t0, named("Bo", "worker"));
    let outcomes = all_at_once(&popugs, vec![twice; 8]).await;
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, EventOutcome::Applied { .. }))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    let events: Vec<PopugDataUpdated> = (1..=8)
        .rev()
        .map(|i| {
            event(
                "p2",
                t0 + Duration::seconds(i),
                named(&format!("Bo {i}"), "worker"),
            )
        })
        .collect();
    all_at_once(&popugs, events).await;
    let p2 = popugs.get(&PopugId("p2".into())).await.unwrap().unwrap();
    assert_eq!(p2.name, "Bo 8");
    let recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM auth_events WHERE popug_id = 'p2'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(recorded, 9, "each distinct event is recorded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_popug_events_apply_once_in_order() {
    let scratch = Scratch::sqlite();
    rules(scratch.connect().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_popug_events_apply_once_in_order() {
    let Some(scratch) = Scratch::postgres().await else {
        return;
    };
    let db = scratch.connect().await;
    rules(db.clone()).await;
    db.pool().close().await;
    scratch.finish().await;
}
