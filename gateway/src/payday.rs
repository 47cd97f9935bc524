//! Make Payment inside the gateway: the scheduler that closes each business day when it ends,
//! and the delivery of what a close leaves queued (payment requests and mail).
//!
//! Every replica runs both. Closing takes a database lock, so one replica closes a day and the
//! others find it closed; deliveries are leased row by row, so no payout or mail is worked on
//! by two replicas at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use accounting_domain::{Mail, Payday, Payout, Queues, Retry};
use anyhow::Context as _;
use chrono::Days;
use futures::StreamExt as _;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use task_domain::{PopugId, Popugs};
use tokio::sync::Notify;

use crate::config::Config;

/// How long after midnight the scheduler waits, so that the last events of the day are in.
const GRACE: chrono::Duration = chrono::Duration::seconds(2);
/// Rows claimed per round of delivery.
const CLAIM: i64 = 100;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 8;
/// How often delivery looks for due work when nobody wakes it.
const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// Closes every day that has ended, oldest first; returns how many it closed.
pub async fn close_ended_days(
    payday: &Payday,
) -> Result<usize, accounting_domain::AccountingError> {
    let today = payday.today();
    let Some(yesterday) = today.checked_sub_days(Days::new(1)) else {
        return Ok(0);
    };
    let (midnight, _) = payday.calendar().bounds(today);
    if payday.now() < midnight + GRACE {
        return Ok(0);
    }
    if payday.open_days(yesterday).await?.is_empty() {
        return Ok(0);
    }
    let closes = payday.close_through(yesterday).await?;
    for close in &closes {
        tracing::info!(
            day = %close.day,
            payouts = close.payout_count,
            paid = close.paid_total,
            negative = close.negative_count,
            "business day closed"
        );
    }
    Ok(closes.len())
}

/// Runs the day-close scheduler until the runtime stops: at start (closing what was missed
/// while no gateway ran) and every `every`.
pub fn spawn_scheduler(payday: Payday, delivery: Arc<Delivery>, every: Duration) {
    tokio::spawn(async move {
        loop {
            match close_ended_days(&payday).await {
                Ok(0) => {}
                Ok(_) => delivery.wake(),
                Err(error) => {
                    tracing::error!(%error, source = ?std::error::Error::source(&error), "closing the business day failed; retrying");
                }
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// The payment system.
pub enum Payments {
    /// No payment system: the company's own ledger records payouts as paid.
    Ledger,
    Http {
        client: reqwest::Client,
        url: String,
    },
}

impl Payments {
    /// Asks for the payout to be paid; who settled it, or why it failed.
    async fn pay(&self, payout: &Payout) -> Result<&'static str, String> {
        match self {
            Self::Ledger => Ok("ledger"),
            Self::Http { client, url } => {
                let body = serde_json::json!({
                    "payoutId": payout.id,
                    "popugId": payout.popug_id,
                    "day": payout.day.to_string(),
                    "amount": payout.amount,
                });
                let response = client
                    .post(url)
                    .header("Idempotency-Key", &payout.id)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("payment system unreachable: {e}"))?;
                let status = response.status();
                if status.is_success() {
                    Ok("payment-system")
                } else {
                    Err(format!("payment system answered {status}"))
                }
            }
        }
    }
}

/// Where mail goes.
pub enum Mailer {
    /// No SMTP server: mail stays in the mailbox table, for admins to read.
    Mailbox,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    async fn send(&self, mail: &Mail, address: Option<&str>) -> Result<&'static str, String> {
        match self {
            Self::Mailbox => Ok("mailbox"),
            Self::Smtp { transport, from } => {
                let address = address.ok_or("no e-mail address is known for this popug")?;
                let to: Mailbox = address
                    .parse()
                    .map_err(|e| format!("the address {address:?} is not usable: {e}"))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .body(mail.body.clone())
                    .map_err(|e| format!("cannot build the message: {e}"))?;
                transport
                    .send(message)
                    .await
                    .map_err(|e| format!("SMTP: {e}"))?;
                Ok("smtp")
            }
        }
    }
}

/// Delivers queued payouts to the payment system and mail to popugs.
pub struct Delivery {
    queues: Queues,
    popugs: Popugs,
    payments: Payments,
    mailer: Mailer,
    retry: Retry,
    wake: Notify,
}

impl Delivery {
    pub fn from_config(config: &Config, queues: Queues, popugs: Popugs) -> anyhow::Result<Self> {
        let payments = match &config.payment_url {
            None => {
                tracing::info!(
                    "no payment system configured (ATES_PAYMENT_URL): payouts are recorded as paid by the company's own ledger"
                );
                Payments::Ledger
            }
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(config.payment_timeout_secs))
                    .build()
                    .context("cannot build the payment system's HTTP client")?;
                Payments::Http {
                    client,
                    url: url.clone(),
                }
            }
        };
        let mailer = match &config.smtp {
            None => {
                tracing::info!(
                    "no SMTP server configured (ATES_SMTP): mail to popugs is kept in the mailbox"
                );
                Mailer::Mailbox
            }
            Some(server) => {
                let (host, port) = match server.rsplit_once(':') {
                    Some((host, port)) => (
                        host.to_owned(),
                        port.parse::<u16>()
                            .with_context(|| format!("ATES_SMTP: {port:?} is not a port"))?,
                    ),
                    None => (server.clone(), 25),
                };
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .timeout(Some(Duration::from_secs(config.payment_timeout_secs)))
                    .build();
                let from = config.mail_from.parse().with_context(|| {
                    format!("ATES_MAIL_FROM: {:?} is not an address", config.mail_from)
                })?;
                Mailer::Smtp { transport, from }
            }
        };
        Ok(Self {
            queues,
            popugs,
            payments,
            mailer,
            retry: Retry {
                max_attempts: config.delivery_max_attempts.max(1),
                backoff: Duration::from_millis(config.delivery_backoff_ms),
                lease: Duration::from_secs(config.payment_timeout_secs * 3 + 30),
            },
            wake: Notify::new(),
        })
    }

    pub fn spawn(self) -> Arc<Self> {
        let delivery = Arc::new(self);
        tokio::spawn(Arc::clone(&delivery).run());
        delivery
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let busy = match self.round().await {
                Ok(delivered) => delivered > 0,
                Err(error) => {
                    tracing::error!(%error, source = ?std::error::Error::source(&error), "delivery round failed");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(DELIVERY_POLL) => {}
                }
            }
        }
    }

    /// One batch of payouts and one of mail; how many it worked on.
    async fn round(&self) -> Result<usize, accounting_domain::AccountingError> {
        let payouts = self.queues.claim_payouts(CLAIM, &self.retry).await?;
        let worked = payouts.len();
        futures::stream::iter(payouts)
            .for_each_concurrent(IN_FLIGHT, |payout| async move {
                if let Err(error) = self.deliver_payout(&payout).await {
                    tracing::error!(%error, payout = %payout.id, "recording a payout's delivery failed");
                }
            })
            .await;

        let mail = self.queues.claim_mail(CLAIM, &self.retry).await?;
        let ids: Vec<PopugId> = mail.iter().map(|m| PopugId(m.popug_id.clone())).collect();
        let addresses: HashMap<String, String> = match self.popugs.by_ids(&ids).await {
            Ok(popugs) => popugs
                .into_iter()
                .filter_map(|p| Some((p.id.0, p.email?)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read popugs' addresses");
                HashMap::new()
            }
        };
        let worked = worked + mail.len();
        let addresses = &addresses;
        futures::stream::iter(mail)
            .for_each_concurrent(IN_FLIGHT, |mail| async move {
                let address = addresses.get(&mail.popug_id).map(String::as_str);
                if let Err(error) = self.deliver_mail(&mail, address).await {
                    tracing::error!(%error, mail = %mail.id, "recording a mail's delivery failed");
                }
            })
            .await;
        Ok(worked)
    }

    async fn deliver_payout(
        &self,
        payout: &Payout,
    ) -> Result<(), accounting_domain::AccountingError> {
        match self.payments.pay(payout).await {
            Ok(settled_by) => self.queues.payout_paid(&payout.id, settled_by).await,
            Err(reason) => {
                let status = self
                    .queues
                    .payout_failed(payout, &reason, &self.retry)
                    .await?;
                tracing::warn!(payout = %payout.id, attempt = payout.attempts + 1, status = status.as_str(), %reason, "payout not delivered");
                Ok(())
            }
        }
    }

    async fn deliver_mail(
        &self,
        mail: &Mail,
        address: Option<&str>,
    ) -> Result<(), accounting_domain::AccountingError> {
        match self.mailer.send(mail, address).await {
            Ok(via) => self.queues.mail_sent(&mail.id, address, via).await,
            Err(reason) => {
                let status = self.queues.mail_failed(mail, &reason, &self.retry).await?;
                tracing::warn!(mail = %mail.id, attempt = mail.attempts + 1, status = status.as_str(), %reason, "mail not sent");
                Ok(())
            }
        }
    }
}
