//! Delivery of what a day close leaves queued: payment requests and mail. Every replica runs
//! it; rows are leased one by one, so no payout or mail is worked on by two replicas at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::mailer::Mailer;
use super::payments::Payments;
use super::poller::{Poller, Round};
use crate::config::Config;
use accounting_domain::{AccountingError, Mail, Payout, Queues, Retry};
use anyhow::Context as _;
use futures::StreamExt as _;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use task_domain::{PopugId, Popugs};

/// Rows claimed per round of delivery.
const CLAIM: i64 = 100;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 8;
/// How often delivery looks for due work when nobody wakes it.
const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// Delivers queued payouts to the payment system and mail to popugs.
pub struct Delivery {
    queues: Queues,
    popugs: Popugs,
    payments: Payments,
    mailer: Mailer,
    retry: Retry,
    poller: Poller,
}

impl Delivery {
    pub fn from_config(config: &Config, queues: Queues, popugs: Popugs) -> anyhow::Result<Self> {
        let payments = match &config.payday.payment_url {
            None => {
                tracing::info!(
                    "no payment system configured (ATES_PAYMENT_URL): payouts are recorded as paid by the company's own ledger"
                );
                Payments::Ledger
            }
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(config.payday.payment_timeout_secs))
                    .build()
                    .context("cannot build the payment system's HTTP client")?;
                Payments::Http {
                    client,
                    url: url.clone(),
                }
            }
        };
        let mailer = match &config.payday.smtp {
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
                    .timeout(Some(Duration::from_secs(
                        config.payday.payment_timeout_secs,
                    )))
                    .build();
                let from = config.payday.mail_from.parse().with_context(|| {
                    format!(
                        "ATES_MAIL_FROM: {:?} is not an address",
                        config.payday.mail_from
                    )
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
                max_attempts: config.payday.delivery_max_attempts.max(1),
                backoff: Duration::from_millis(config.payday.delivery_backoff_ms),
                lease: Duration::from_secs(config.payday.payment_timeout_secs * 3 + 30),
            },
            poller: Poller::new("delivering payouts and mail", DELIVERY_POLL),
        })
    }

    pub fn spawn(self) -> Arc<Self> {
        let delivery = Arc::new(self);
        let running = Arc::clone(&delivery);
        tokio::spawn(async move { running.poller.run(|| running.round()).await });
        delivery
    }

    pub fn wake(&self) {
        self.poller.wake();
    }

    /// One batch of payouts and one of mail.
    async fn round(&self) -> Result<Round, AccountingError> {
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
        let ids: Vec<PopugId> = mail.iter().map(|m| m.popug_id.clone()).collect();
        let addresses: HashMap<PopugId, String> = match self.popugs.by_ids(&ids).await {
            Ok(popugs) => popugs
                .into_iter()
                .filter_map(|p| Some((p.id, p.email?)))
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
        Ok(if worked > 0 { Round::More } else { Round::Idle })
    }

    async fn deliver_payout(&self, payout: &Payout) -> Result<(), AccountingError> {
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
    ) -> Result<(), AccountingError> {
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
