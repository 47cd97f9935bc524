//! A few hundred random histories of creations, completions and shuffles, by random popugs,
//! run through the domains and replayed against an in-memory model of the rules: the answers,
//! the balances and the audit log must agree. The business clock moves five hours after each
//! history, and each day that ends is closed and paid out. At the end, every popug's statement
//! of every day must add up, chain onto the day before, and be the one its payout mail carries.
//! A failure prints the seed; `MODEL_SEED=<seed>` runs that history first.

use std::collections::HashMap;

use accounting_domain::{Calendar, EntryKind, Ledger, LogFilter, Payday};
use ates_db::PageRequest;
use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use task_domain::{Actor, NewTask, PopugId, Popugs, Role, TaskError, TaskId, TaskStatus, Tracker};

use crate::helpers::{TestDatabase, domain_popugs};

const HISTORIES: u64 = 300;
const OPERATIONS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_histories_match_the_model() {
    random_histories_match_the_model(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_random_histories_match_the_model() {
    if let Some(database) = TestDatabase::postgres().await {
        random_histories_match_the_model(database).await;
    }
}

/// What the rules say the state is.
#[derive(Default)]
struct Model {
    balances: HashMap<String, i64>,
    /// Task → (open?, assignee, fee, reward).
    tasks: HashMap<String, (bool, String, i64, i64)>,
    /// Entries expected since the last check: (kind, amount, popug, task).
    pending: Vec<(EntryKind, i64, String, String)>,
}

impl Model {
    fn entry(&mut self, kind: EntryKind, amount: i64, popug: &str, task: &str) {
        *self.balances.entry(popug.to_owned()).or_default() += amount;
        self.pending
            .push((kind, amount, popug.to_owned(), task.to_owned()));
    }
}

/// When the first history runs, and how far the clock moves after each.
const START: &str = "2026-03-01T06:00:00Z";
const STEP: chrono::Duration = chrono::Duration::hours(5);

async fn random_histories_match_the_model(database: TestDatabase) {
    let db = database.connect_at(START).await;
    let calendar = Calendar::new("Europe/Berlin").expect("a zone");
    let (tracker, popugs, ledger, payday) = (
        Tracker::new(db.clone(), task_domain::Popugs::new(db.clone())),
        Popugs::new(db.clone()),
        Ledger::new(db.clone()),
        Payday::new(db.clone(), calendar),
    );
    let mut now: DateTime<Utc> = START.parse().expect("an instant");
    let actors = domain_popugs(
        &popugs,
        &[
            "admin",
            "manager",
            "accountant",
            "worker",
            "worker",
            "worker",
            "worker",
        ],
    )
    .await;
    let base: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut model = Model::default();
    let mut last_seq = 0;
    for history in 0..HISTORIES {
        let seed = base.wrapping_add(history);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..OPERATIONS {
            step(&mut rng, &tracker, &ledger, &actors, &mut model)
                .await
                .unwrap_or_else(|e| panic!("history {history} (seed {seed}, base {base}): {e}"));
        }
        ledger.catch_up().await.unwrap();
        let entries = ledger
            .log(
                &LogFilter::default(),
                &PageRequest::forward(1_000_000, Some(last_seq.to_string())),
                true,
            )
            .await
            .unwrap()
            .items;
        if let Some(last) = entries.last() {
            last_seq = last.seq;
        }
        let mut actual: Vec<_> = entries
            .into_iter()
            .map(|e| {
                (
                    e.kind.as_str(),
                    e.amount,
                    e.popug_id.0,
                    e.task_id.map(|id| id.0).unwrap_or_default(),
                )
            })
            .collect();
        let mut expected: Vec<_> = model
            .pending
            .drain(..)
            .map(|(k, a, p, t)| (k.as_str(), a, p, t))
            .collect();
        actual.sort();
        expected.sort();
        assert_eq!(
            actual, expected,
            "audit log of history {history} (seed {seed}, base {base})"
        );
        for actor in &actors {
            let balance = ledger.balance(&actor.id).await.unwrap();
            let modelled = model.balances.get(&actor.id.0).copied().unwrap_or(0);
            assert_eq!(
                balance, modelled,
                "balance of {} after history {history} (seed {seed}, base {base})",
                actor.id
            );
        }
        // The next history runs later; a day that ended meanwhile is closed and pays every
        // positive balance, which the next history's log must show.
        let today = calendar.day_of(now);
        now += STEP;
        database.set_clock(&now.to_rfc3339());
        if calendar.day_of(now) != today {
            payday.close_through(today).await.unwrap();
            for (popug, balance) in &model.balances.clone() {
                if *balance > 0 {
                    model.entry(EntryKind::Payout, -balance, popug, "");
                }
            }
        }
    }
    let first = calendar.day_of(START.parse().expect("an instant"));
    statements_add_up(&db, &payday, &ledger, &actors, first, calendar.day_of(now)).await;
}

/// Every popug's statement of every day from `first` to `last`: each entry moves the balance
/// by its amount, each day opens where the one before closed, the last closes at the balance,
/// and a payout's mail carries the statement of its day.
async fn statements_add_up(
    db: &ates_db::Db,
    payday: &Payday,
    ledger: &Ledger,
    actors: &[Actor],
    first: NaiveDate,
    last: NaiveDate,
) {
    let mail: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "SELECT p.popug_id, p.day, m.body FROM payouts p JOIN mail m ON m.payout_id = p.id",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|(popug, day, body)| ((popug, day), body))
    .collect();
    let mut mailed = 0;
    for actor in actors {
        let mut closed = 0;
        for day in first.iter_days().take_while(|day| *day <= last) {
            let statement = payday.statement(&actor.id, day).await.unwrap();
            let context = format!("{}'s statement of {day}", actor.id);
            assert_eq!(statement.opening, closed, "{context}: {statement:?}");
            let mut running = statement.opening;
            for entry in &statement.entries {
                running += entry.amount;
                assert_eq!(entry.balance_after, running, "{context}: {statement:?}");
            }
            assert_eq!(statement.closing, running, "{context}");
            if let Some(body) = mail.get(&(actor.id.0.clone(), day.to_string())) {
                mailed += 1;
                let text = statement.to_text(payday.calendar());
                assert!(body.contains(&text), "{context}: {body}\nwithout\n{text}");
            }
            closed = statement.closing;
        }
        assert_eq!(
            closed,
            ledger.balance(&actor.id).await.unwrap(),
            "{}'s last statement against the balance",
            actor.id
        );
    }
    assert_eq!(mailed, mail.len(), "every payout mail was checked");
    assert!(mailed > 0, "some day paid someone");
}

async fn step(
    rng: &mut StdRng,
    tracker: &Tracker,
    ledger: &Ledger,
    actors: &[Actor],
    model: &mut Model,
) -> Result<(), String> {
    let actor = actors.choose(rng).unwrap().clone();
    match rng.random_range(0..20) {
        0..=7 => {
            let task = tracker
                .create(
                    &actor,
                    NewTask {
                        title: "t".into(),
                        jira_id: None,
                        description: String::new(),
                    },
                )
                .await
                .map_err(|e| format!("create: {e}"))?;
            // The producer posts its own events (as a mutation does when the consumer is
            // behind), sometimes twice; or the consumer takes them in order.
            post_or_catch_up(rng, ledger, &task.events).await?;
            let task = task.value;
            if !task.assignee_id.0.starts_with("popug-")
                || !Role::is_assignable(role_of(actors, &task.assignee_id))
            {
                return Err(format!("assigned to {}", task.assignee_id));
            }
            let prices = ledger
                .prices(std::slice::from_ref(&task.id))
                .await
                .map_err(|e| e.to_string())?[&task.id];
            model.tasks.insert(
                task.id.0.clone(),
                (
                    true,
                    task.assignee_id.0.clone(),
                    prices.assign_fee,
                    prices.reward,
                ),
            );
            model.entry(EntryKind::TaskCreated, 0, &actor.id.0, &task.id.0);
            model.entry(
                EntryKind::TaskAssigned,
                -prices.assign_fee,
                &task.assignee_id.0,
                &task.id.0,
            );
        }
        8..=18 => {
            // Mostly an open task, sometimes any.
            let only_open = rng.random_bool(0.8);
            let mut ids: Vec<&String> = model
                .tasks
                .iter()
                .filter(|(_, t)| t.0 || !only_open)
                .map(|(id, _)| id)
                .collect();
            ids.sort();
            let Some(id) = ids.choose(rng).map(|s| (*s).clone()) else {
                return Ok(());
            };
            let (open, assignee, _, reward) = model.tasks[&id].clone();
            // Mostly the assignee, sometimes anyone.
            let actor = if rng.random_bool(0.7) {
                actors.iter().find(|a| a.id.0 == assignee).unwrap().clone()
            } else {
                actor
            };
            let result = tracker.complete(&actor, &TaskId(id.clone())).await;
            if let Ok(completed) = &result {
                post_or_catch_up(rng, ledger, &completed.events).await?;
            }
            match (result.map(|c| c.value), actor.id.0 == assignee, open) {
                (Ok(task), true, true) => {
                    if task.status != TaskStatus::Done {
                        return Err("completed task is not done".into());
                    }
                    model.tasks.get_mut(&id).unwrap().0 = false;
                    model.entry(EntryKind::TaskCompleted, reward, &actor.id.0, &id);
                }
                (Err(TaskError::Forbidden(_)), false, _) => {}
                (Err(TaskError::AlreadyInState { .. }), true, false) => {}
                (other, is_assignee, open) => {
                    return Err(format!(
                        "complete (assignee: {is_assignee}, open: {open}) gave {other:?}"
                    ));
                }
            }
        }
        _ => {
            let result = tracker.shuffle(&actor).await.map(|s| s.value);
            // The model's own rule: the people who hand tasks out may shuffle them.
            let may_shuffle = matches!(actor.role, Role::Admin | Role::Manager);
            match result {
                Err(TaskError::Forbidden(_)) if !may_shuffle => {}
                Ok(outcome) if may_shuffle => {
                    let open: Vec<TaskId> = model
                        .tasks
                        .iter()
                        .filter(|(_, t)| t.0)
                        .map(|(id, _)| TaskId(id.clone()))
                        .collect();
                    if outcome.reassigned != open.len() {
                        return Err(format!(
                            "shuffled {} of {} open tasks",
                            outcome.reassigned,
                            open.len()
                        ));
                    }
                    for task in tracker.by_ids(&open).await.map_err(|e| e.to_string())? {
                        let entry = model.tasks.get_mut(&task.id.0).unwrap();
                        entry.1 = task.assignee_id.0.clone();
                        let fee = entry.2;
                        model.entry(
                            EntryKind::TaskAssigned,
                            -fee,
                            &task.assignee_id.0,
                            &task.id.0,
                        );
                    }
                }
                other => return Err(format!("shuffle by {:?} gave {other:?}", actor.role)),
            }
        }
    }
    Ok(())
}

/// The ledger takes `events` one of three ways: the consumer in outbox order, the producer
/// posting them out of order, or the producer posting them twice (a retried post).
async fn post_or_catch_up(
    rng: &mut StdRng,
    ledger: &Ledger,
    events: &[ates_events::outbox::StoredEvent],
) -> Result<(), String> {
    match rng.random_range(0..3) {
        0 => ledger.catch_up().await.map(drop),
        1 => ledger.post_now(events).await.map(drop),
        _ => {
            ledger.post_now(events).await.map_err(|e| e.to_string())?;
            let again = ledger.post_now(events).await.map_err(|e| e.to_string())?;
            if again != 0 {
                return Err(format!("posting again applied {again} events"));
            }
            Ok(())
        }
    }
    .map_err(|e| e.to_string())
}

fn role_of(actors: &[Actor], id: &PopugId) -> Role {
    actors
        .iter()
        .find(|a| &a.id == id)
        .map_or(Role::Admin, |a| a.role)
}
