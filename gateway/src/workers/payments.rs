//! The company's payment system, told of each payout over HTTPS.

use std::time::Duration;

use accounting_domain::Payout;
use anyhow::Context as _;

use crate::config::Config;

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
    /// The payment system `ATES_PAYMENT_URL` names, trusting the system's roots and
    /// `trusted` (PEM) besides. A plain `http://` one only where `plaintext_allowed`.
    pub(super) fn from_config(
        config: &Config,
        trusted: Option<&[u8]>,
        plaintext_allowed: bool,
    ) -> anyhow::Result<Self> {
        let Some(url) = &config.payday.payment_url else {
            tracing::info!(
                "no payment system configured (ATES_PAYMENT_URL): payouts are recorded as paid by the company's own ledger"
            );
            return Ok(Self::Ledger);
        };
        let parsed =
            reqwest::Url::parse(url).with_context(|| "ATES_PAYMENT_URL is not a URL".to_owned())?;
        match parsed.scheme() {
            "https" => {}
            "http" if plaintext_allowed => {
                tracing::warn!("ATES_PAYMENT_URL is plain http://: payouts travel unencrypted");
            }
            "http" => anyhow::bail!(
                "ATES_PAYMENT_URL is plain http://, which production refuses: use https://, or set \
                 ATES_ALLOW_PLAINTEXT=true for a payment system on a trusted network"
            ),
            other => anyhow::bail!("ATES_PAYMENT_URL: {other}:// is not http:// or https://"),
        }
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.payday.payment_timeout_secs))
            .tls_built_in_native_certs(true);
        for certificate in reqwest::Certificate::from_pem_bundle(trusted.unwrap_or_default())
            .context("ATES_TLS_CA_FILE holds no usable PEM certificate")?
        {
            client = client.add_root_certificate(certificate);
        }
        let client = client
            .build()
            .context("cannot build the payment system's HTTP client")?;
        Ok(Self::Http {
            client,
            url: url.clone(),
        })
    }

    /// Asks for the payout to be paid; who settled it, or why it failed.
    pub(super) async fn pay(&self, payout: &Payout) -> Result<&'static str, String> {
        match self {
            Self::Ledger => Ok("ledger"),
            Self::Http { client, url } => {
                let body = serde_json::json!({
                    "payoutId": payout.id,
                    "popugId": payout.popug_id.as_str(),
                    "day": payout.day.to_string(),
                    "amount": payout.amount,
                });
                let response = client
                    .post(url)
                    .header("Idempotency-Key", &payout.id)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "payment system unreachable: {}",
                            super::causes(&e.without_url())
                        )
                    })?;
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
