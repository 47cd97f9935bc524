//! The company's payment system, told of each payout.

use accounting_domain::Payout;

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
