//! Delivery of what a day close leaves queued: payment requests and mail. Every replica runs
//! it; rows are leased one by one, so no payout or mail is worked on by two replicas at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::mailer::Mailer;
use super::payments::Payments;
use super::poller::{Poller, Round};
use crate::config::{Config, Environment};
use accounting_domain::{AccountingError, Mail, Payout, Queues, Retry};
use anyhow::Context as _;
use futures::StreamExt as _;
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
        let trusted = match &config.payday.tls_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read ATES_TLS_CA_FILE {}", path.display()))?,
            ),
            None => None,
        };
        let plaintext_allowed =
            config.server.env != Environment::Production || config.payday.allow_plaintext;
        let payments = Payments::from_config(config, trusted.as_deref(), plaintext_allowed)?;
        let mailer = Mailer::from_config(config, trusted.as_deref(), plaintext_allowed)?;
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
