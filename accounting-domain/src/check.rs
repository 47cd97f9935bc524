//! The ledger checks itself: every invariant the test suite holds the money to, counted on
//! the live database by set-wise queries, so that an operator can run it from cron.

use std::time::Duration;

use ates_db::Db;
use ates_events::outbox;

use crate::AccountingError;
use crate::posting::CONSUMER;

/// One invariant, checked: its name, what was found, and how many things break it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    /// The figures behind the verdict, for a person to read.
    pub figure: String,
    /// Rows (accounts, events, tasks, payouts) that break the invariant; 0 when it holds.
    pub violations: i64,
}

/// Every check, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    pub checks: Vec<Check>,
}

impl LedgerCheck {
    /// Everything that breaks an invariant, all checks together.
    pub fn violations(&self) -> i64 {
        self.checks.iter().map(|check| check.violations).sum()
    }
}

/// How many rows `sql` counts.
async fn count(db: &Db, sql: &'static str) -> Result<i64, AccountingError> {
    Ok(sqlx::query_scalar(sql).fetch_one(db.pool()).await?)
}

/// How many rows `sql` counts, with `$1` the ledger's consumer name.
async fn count_of_ledger(db: &Db, sql: &'static str) -> Result<i64, AccountingError> {
    Ok(sqlx::query_scalar(sql)
        .bind(CONSUMER)
        .fetch_one(db.pool())
        .await?)
}

/// Checks every invariant of the ledger. An event the ledger has not handled after
/// `max_backlog` is a breach of the last one.
pub async fn check_ledger(db: &Db, max_backlog: Duration) -> Result<LedgerCheck, AccountingError> {
    let mut checks = Vec::with_capacity(6);

    // A balance is the sum of its log; log money without an account is lost money.
    let (accounts, off): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN a.balance <> COALESCE(l.total, 0) THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM accounts a LEFT JOIN (SELECT popug_id, SUM(amount) AS total FROM audit_log GROUP BY popug_id) l \
             ON l.popug_id = a.popug_id",
    )
    .fetch_one(db.pool())
    .await?;
    let orphans = count(
        db,
        "SELECT COUNT(*) FROM (SELECT l.popug_id FROM audit_log l \
             LEFT JOIN accounts a ON a.popug_id = l.popug_id WHERE a.popug_id IS NULL \
             GROUP BY l.popug_id HAVING SUM(l.amount) <> 0) AS orphans",
    )
    .await?;
    checks.push(Check {
        name: "balances are the sums of their logs",
        figure: format!("{accounts} accounts, {off} off their log, {orphans} popugs with log money and no account"),
        violations: off + orphans,
    });

    // One entry per handled event: none missing, none twice, none without its event.
    let missing = count_of_ledger(
        db,
        "SELECT COUNT(*) FROM handled_events h LEFT JOIN audit_log l ON l.event_id = h.event_id \
         WHERE h.consumer = $1 AND l.seq IS NULL",
    )
    .await?;
    let doubled = count(
        db,
        "SELECT COUNT(*) FROM (SELECT event_id FROM audit_log GROUP BY event_id HAVING COUNT(*) > 1) AS doubled",
    )
    .await?;
    let unhandled = count_of_ledger(
        db,
        "SELECT COUNT(*) FROM audit_log l LEFT JOIN handled_events h \
             ON h.consumer = $1 AND h.event_id = l.event_id \
         WHERE l.kind <> 'PAYOUT' AND h.event_id IS NULL",
    )
    .await?;
    checks.push(Check {
        name: "one log entry per handled event",
        figure: format!(
            "{missing} handled events without an entry, {doubled} events logged twice, \
             {unhandled} entries of no handled event"
        ),
        violations: missing + doubled + unhandled,
    });

    let rewarded_twice = count(
        db,
        "SELECT COUNT(*) FROM (SELECT task_id FROM audit_log WHERE kind = 'TASK_COMPLETED' \
             GROUP BY task_id HAVING COUNT(*) > 1) AS twice",
    )
    .await?;
    checks.push(Check {
        name: "at most one reward per task",
        figure: format!("{rewarded_twice} tasks rewarded more than once"),
        violations: rewarded_twice,
    });

    // Each task entry moves its task's price, so the fees less the rewards are what the popugs
    // lost on tasks.
    let (fees, rewards, task_money, mispriced): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN l.kind = 'TASK_ASSIGNED' THEN p.assign_fee ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN l.kind = 'TASK_COMPLETED' THEN p.reward ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(l.amount), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE \
               WHEN p.task_id IS NULL AND l.amount <> 0 THEN 1 \
               WHEN l.kind = 'TASK_CREATED' AND l.amount <> 0 THEN 1 \
               WHEN l.kind = 'TASK_ASSIGNED' AND l.amount <> -p.assign_fee THEN 1 \
               WHEN l.kind = 'TASK_COMPLETED' AND l.amount <> p.reward THEN 1 \
               ELSE 0 END), 0) AS BIGINT) \
         FROM audit_log l LEFT JOIN task_prices p ON p.task_id = l.task_id \
         WHERE l.kind <> 'PAYOUT'",
    )
    .fetch_one(db.pool())
    .await?;
    checks.push(Check {
        name: "fees less rewards are what the popugs lost on tasks",
        figure: format!(
            "fees {fees}, rewards {rewards}, popugs' task money {task_money}, \
             {mispriced} entries not at their task's price"
        ),
        violations: mispriced + i64::from(fees - rewards != -task_money),
    });

    // One payout per popug and day, and one PAYOUT entry per payout.
    let payouts = count(db, "SELECT COUNT(*) FROM payouts").await?;
    let twice = count(
        db,
        "SELECT COUNT(*) FROM (SELECT popug_id, day FROM payouts GROUP BY popug_id, day \
             HAVING COUNT(*) > 1) AS twice",
    )
    .await?;
    let unlogged = count(
        db,
        "SELECT COUNT(*) FROM payouts p LEFT JOIN audit_log l ON l.event_id = p.id \
         WHERE l.seq IS NULL OR l.kind <> 'PAYOUT' OR l.amount <> -p.amount",
    )
    .await?;
    checks.push(Check {
        name: "one payout per popug and day",
        figure: format!(
            "{payouts} payouts, {twice} popug-days paid more than once, \
             {unlogged} payouts without their PAYOUT entry"
        ),
        violations: twice + unlogged,
    });

    // Events wait for the ledger a moment, never long.
    let backlog = outbox::backlog(db, CONSUMER).await?;
    let waited = backlog.oldest.map_or(Duration::ZERO, |oldest| {
        (db.now() - oldest).to_std().unwrap_or_default()
    });
    let late = backlog.waiting > 0 && waited > max_backlog;
    checks.push(Check {
        name: "no event waits long for the ledger",
        figure: format!(
            "{} events waiting, the oldest for {} s (bound {} s)",
            backlog.waiting,
            waited.as_secs(),
            max_backlog.as_secs()
        ),
        violations: if late { backlog.waiting } else { 0 },
    });

    Ok(LedgerCheck { checks })
}
