//! Paying one batch of popugs at a day's end, in one transaction: who looks due, who is due
//! once their accounts are locked, and the payout written everywhere it belongs.

use std::collections::{HashMap, HashSet};

use ates_db::{Value, list_placeholders, placeholders, to_micros};
use ates_events::NewEvent;
use ates_events::outbox;
use ates_events::payout::PayoutMade;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::Payday;
use super::mail::payout_mail;
use super::statement::statements;
use crate::{AccountingError, EntryKind};

/// The instants `[start, end)` of the day being closed.
type Bounds = (DateTime<Utc>, DateTime<Utc>);

/// A popug who looked due when the close began.
pub(super) struct Candidate {
    popug: String,
    standing: Standing,
}

/// What the balance of a popug consists of, as a close sees it.
#[derive(Default, Clone, Copy)]
struct Standing {
    balance: i64,
    /// Task money logged after the day's end: not the day's to pay.
    later: i64,
    /// Task money logged during the day.
    earned: i64,
}

/// A popug to be paid, and the payout's id.
struct Due<'a> {
    popug: &'a str,
    standing: Standing,
    amount: i64,
    id: Uuid,
}

impl Payday {
    /// Who looks due at the end of `day` and is not paid for it yet, read in one pass, in id
    /// order. Each batch checks it again under its locks.
    pub(super) async fn candidates(
        &self,
        day: NaiveDate,
        (start, end): Bounds,
    ) -> Result<Vec<Candidate>, AccountingError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT acc.popug_id, acc.balance, \
                    CAST(COALESCE(l.later, 0) AS BIGINT), CAST(COALESCE(l.earned, 0) AS BIGINT) \
             FROM accounts acc \
             LEFT JOIN (SELECT popug_id, \
                               SUM(CASE WHEN logged_at >= $1 THEN amount ELSE 0 END) AS later, \
                               SUM(CASE WHEN logged_at < $2 THEN amount ELSE 0 END) AS earned \
                        FROM audit_log WHERE logged_at >= $3 AND kind <> 'PAYOUT' \
                        GROUP BY popug_id) l \
                    ON l.popug_id = acc.popug_id \
             WHERE acc.balance - COALESCE(l.later, 0) > 0 \
               AND NOT EXISTS (SELECT 1 FROM payouts p WHERE p.popug_id = acc.popug_id AND p.day = $4) \
             ORDER BY acc.popug_id",
        )
        .bind(to_micros(end))
        .bind(to_micros(end))
        .bind(to_micros(start))
        .bind(day.to_string())
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(popug, balance, later, earned)| Candidate {
                popug,
                standing: Standing {
                    balance,
                    later,
                    earned,
                },
            })
            .collect())
    }

    /// Pays the `candidates` who are due at the end of `day` and not paid yet.
    pub(super) async fn pay(
        &self,
        conn: &mut AnyConnection,
        day: NaiveDate,
        bounds: Bounds,
        candidates: &[Candidate],
    ) -> Result<(), AccountingError> {
        let standings = self.lock_standings(conn, bounds, candidates).await?;
        let due: Vec<Due> = candidates
            .iter()
            .filter_map(|candidate| {
                let standing = standings.get(&candidate.popug).copied()?;
                let amount = standing.balance - standing.later;
                (amount > 0).then(|| Due {
                    popug: &candidate.popug,
                    standing,
                    amount,
                    id: payout_id(&candidate.popug, day),
                })
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        // One instant for the payout row, its log entry, its event and its mail.
        let now = self.db.now();
        let fresh = claim(conn, day, now, &due).await?;
        let due: Vec<Due> = due
            .into_iter()
            .filter(|due| fresh.contains(due.popug))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let popugs: Vec<&str> = due.iter().map(|due| due.popug).collect();
        let statements = statements(conn, day, bounds, &popugs).await?;
        let mail = due
            .iter()
            .zip(&statements)
            .map(|(due, statement)| {
                payout_mail(statement, &self.calendar, due.standing.earned, due.amount)
            })
            .collect();
        record(conn, day, now, &due, mail).await
    }

    /// Locks the candidates' accounts and returns what each balance consists of now. An
    /// unchanged balance means nothing moved the account since the candidates were read (a
    /// payout or any entry with an amount would have); a changed one is read again.
    async fn lock_standings(
        &self,
        conn: &mut AnyConnection,
        (start, end): Bounds,
        candidates: &[Candidate],
    ) -> Result<HashMap<String, Standing>, AccountingError> {
        let sql = format!(
            // In id order, as the ledger locks them, so neither waits for the other in a circle.
            "SELECT popug_id, balance FROM accounts WHERE popug_id IN ({}) ORDER BY popug_id{}",
            list_placeholders(self.db.backend(), candidates.len()),
            self.db.lock_rows()
        );
        let ids = candidates.iter().map(|c| Value::Text(c.popug.clone()));
        let balances: HashMap<String, i64> =
            ates_db::bind_all_as(sqlx::query_as(sqlx::AssertSqlSafe(sql)), ids)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        let mut standings = HashMap::new();
        let mut stale = Vec::new();
        for candidate in candidates {
            let Some(&balance) = balances.get(&candidate.popug) else {
                continue;
            };
            let standing = if balance == candidate.standing.balance {
                candidate.standing
            } else {
                stale.push(candidate.popug.clone());
                Standing {
                    balance,
                    ..Standing::default()
                }
            };
            standings.insert(candidate.popug.clone(), standing);
        }
        if stale.is_empty() {
            return Ok(standings);
        }
        let sql = format!(
            "SELECT popug_id, \
                    CAST(SUM(CASE WHEN logged_at >= $1 THEN amount ELSE 0 END) AS BIGINT), \
                    CAST(SUM(CASE WHEN logged_at < $2 THEN amount ELSE 0 END) AS BIGINT) \
             FROM audit_log WHERE kind <> 'PAYOUT' AND logged_at >= $3 AND popug_id IN ({}) \
             GROUP BY popug_id",
            placeholders(4, stale.len())
        );
        let head = [to_micros(end), to_micros(end), to_micros(start)].map(Value::Int);
        let sums: Vec<(String, i64, i64)> = ates_db::bind_all_as(
            sqlx::query_as(sqlx::AssertSqlSafe(sql)),
            head.into_iter().chain(stale.into_iter().map(Value::Text)),
        )
        .fetch_all(&mut *conn)
        .await?;
        for (popug, later, earned) in sums {
            if let Some(standing) = standings.get_mut(&popug) {
                standing.later = later;
                standing.earned = earned;
            }
        }
        Ok(standings)
    }
}

/// The namespace of payout ids (a UUIDv5 name space of our own).
const PAYOUTS: Uuid = Uuid::from_u128(0x6a7e_5a1d_0c1e_4b5e_9f1a_07e5_0a7e_5002);

/// The id of the payout of `popug` for `day`, and so the `Idempotency-Key` the payment system
/// sees: a UUIDv5 of the two, the same however often the payout is made. A payout made again
/// after its row was lost (a restore, a failover to a lagging replica) carries the key the
/// payment system has already paid, and is not paid twice.
pub fn payout_id(popug: &str, day: NaiveDate) -> Uuid {
    Uuid::new_v5(&PAYOUTS, format!("{popug}\n{day}").as_bytes())
}

/// Inserts the payout rows: the guard of "once". Whoever a concurrent closer paid first
/// conflicts here and is left out of the returned set, and so of everything after.
async fn claim(
    conn: &mut AnyConnection,
    day: NaiveDate,
    now: DateTime<Utc>,
    due: &[Due<'_>],
) -> Result<HashSet<String>, AccountingError> {
    // Delivery goes by the real clock, whatever clock the close runs by.
    let queued_at = to_micros(ates_db::now());
    let created_at = to_micros(now);
    let payouts = due.iter().flat_map(|due| {
        [
            Value::from(due.id.to_string()),
            due.popug.into(),
            day.to_string().into(),
            due.amount.into(),
            due.standing.earned.into(),
            "PENDING".into(),
            queued_at.into(),
            created_at.into(),
        ]
    });
    let fresh = ates_db::insert_rows_returning(
            conn,
            "INSERT INTO payouts (id, popug_id, day, amount, earned, status, next_attempt_at, created_at) VALUES",
            "ON CONFLICT (popug_id, day) DO NOTHING RETURNING popug_id",
            8,
            payouts.collect(),
        )
        .await?;
    Ok(fresh.into_iter().collect())
}

/// Writes what a claimed payout moves: the PAYOUT log entry, the balance, the mail (a subject
/// and body for each of `due`, in its order) and the PayoutMade event.
async fn record(
    conn: &mut AnyConnection,
    day: NaiveDate,
    now: DateTime<Utc>,
    due: &[Due<'_>],
    messages: Vec<(String, String)>,
) -> Result<(), AccountingError> {
    let queued_at = to_micros(ates_db::now());
    let mut entries = Vec::new();
    let mut mail = Vec::new();
    let mut moves = Vec::new();
    let mut events = Vec::new();
    for (
        &Due {
            popug,
            standing,
            amount,
            id,
        },
        (subject, body),
    ) in due.iter().zip(messages)
    {
        let made = PayoutMade {
            payout_id: id.to_string(),
            popug_id: popug.to_owned(),
            day,
            amount,
            earned: standing.earned,
            paid_at: now,
        };
        let mut event = NewEvent::new(&made, now);
        event.id = id;
        events.push(event);
        entries.extend([
            Value::from(id.to_string()),
            EntryKind::Payout.as_str().into(),
            (-amount).into(),
            (standing.balance - amount).into(),
            Value::Null,
            popug.into(),
            to_micros(now).into(),
        ]);
        mail.extend([
            Value::from(Uuid::now_v7().to_string()),
            id.to_string().into(),
            popug.into(),
            subject.into(),
            body.into(),
            "PENDING".into(),
            queued_at.into(),
            to_micros(now).into(),
        ]);
        moves.extend([Value::from(popug), (-amount).into()]);
    }
    crate::audit_log::append(conn, entries).await?;
    ates_db::insert_rows(
            conn,
            "INSERT INTO mail (id, payout_id, popug_id, subject, body, status, next_attempt_at, created_at) VALUES",
            "",
            8,
            mail,
        )
        .await?;
    crate::posting::move_balances(conn, moves).await?;
    outbox::append(conn, &events).await?;
    Ok(())
}
