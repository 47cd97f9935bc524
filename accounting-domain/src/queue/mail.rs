//! The mail that tells each popug of their payout, queued for the SMTP server.

use ates_db::from_micros;
use ates_events::ids::PopugId;
use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Queue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    Pending,
    Sent,
    Failed,
}

impl MailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Sent => "SENT",
            Self::Failed => "FAILED",
        }
    }

    fn from_stored(stored: &str) -> Self {
        match stored {
            "SENT" => Self::Sent,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: String,
    pub payout_id: Option<String>,
    pub popug_id: PopugId,
    pub subject: String,
    pub body: String,
    pub status: MailStatus,
    /// Where it went; unknown until it is sent.
    pub address: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// `smtp`, or `mailbox` when no SMTP server is configured.
    pub sent_via: Option<String>,
}

const MAIL_COLUMNS: &str = "id, payout_id, popug_id, subject, body, status, address, attempts, \
                            last_error, created_at, sent_at, sent_via";

#[derive(FromRow)]
pub(super) struct MailRow {
    id: String,
    payout_id: Option<String>,
    popug_id: String,
    subject: String,
    body: String,
    status: String,
    address: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
    sent_via: Option<String>,
}

impl From<MailRow> for Mail {
    fn from(row: MailRow) -> Self {
        Self {
            id: row.id,
            payout_id: row.payout_id,
            popug_id: PopugId(row.popug_id),
            subject: row.subject,
            body: row.body,
            status: MailStatus::from_stored(&row.status),
            address: row.address,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: from_micros(row.created_at),
            sent_at: row.sent_at.map(from_micros),
            sent_via: row.sent_via,
        }
    }
}

/// The `mail` table as a queue.
pub(super) struct MailQueue;

impl Queue for MailQueue {
    const TABLE: &'static str = "mail";
    const COLUMNS: &'static str = MAIL_COLUMNS;
    /// Mail has no day of its own: it belongs to its payout's.
    const OF_DAY: &'static str = "payout_id IN (SELECT id FROM payouts WHERE day = {})";
    type Row = MailRow;
    type Item = Mail;
    type Status = MailStatus;

    fn status(stored: &str) -> MailStatus {
        MailStatus::from_stored(stored)
    }
}
