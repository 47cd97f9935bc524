//! TLS to the payment system and the SMTP server, with a certificate authority made in the
//! test: a payout over HTTPS and its mail over STARTTLS; a server whose certificate nobody
//! trusts, refused, with the refusal on the payout and the mail; and production refusing plain
//! delivery unless told otherwise.

use gateway::config::{Environment, SmtpTls};
use gateway::{App, Config};
use serde_json::json;

use super::{CLOSE, app_at, seed, wait_for_count};
use crate::helpers::TestDatabase;
use crate::helpers::fakes::{PaymentSystem, Pki, SmtpServer};
use crate::on_both_backends;

on_both_backends!(
    a_payout_goes_over_https_and_its_mail_over_starttls,
    an_untrusted_certificate_is_refused,
    production_refuses_plain_delivery,
);

/// A worker who earned 19 on 1 March, known to the gateway with an address; the clock past
/// that midnight. The gateway trusts `trusted` and is configured by `adjust`.
async fn worker_due(
    database: TestDatabase,
    trusted: &Pki,
    adjust: impl FnOnce(&mut Config),
) -> (crate::helpers::TestApp, crate::helpers::User) {
    let ca_file = database.folder().join("company-ca.pem");
    std::fs::write(&ca_file, &trusted.ca_pem).expect("write the CA file");
    let app = app_at(database, "2026-03-02T00:10:00Z", |config| {
        config.payday.tls_ca_file = Some(ca_file);
        config.payday.delivery_backoff_ms = 20;
        adjust(config);
    })
    .await;
    let alice = app.user("worker", "alice").await;
    seed(
        &app.db,
        &[
            (
                alice.key.as_str(),
                "TASK_ASSIGNED",
                "t1",
                -12,
                "2026-03-01T09:00:00Z",
            ),
            (
                alice.key.as_str(),
                "TASK_COMPLETED",
                "t1",
                31,
                "2026-03-01T10:00:00Z",
            ),
        ],
    )
    .await;
    (app, alice)
}

async fn a_payout_goes_over_https_and_its_mail_over_starttls(database: TestDatabase) {
    let company = Pki::new("UberPopug test CA");
    let payments = PaymentSystem::start_tls(0, company.server()).await;
    let smtp = SmtpServer::start_starttls(company.server()).await;
    assert!(payments.url.starts_with("https://"));
    let (app, alice) = worker_due(database, &company, |config| {
        // Both encrypted, as production demands (`production_refuses_plain_delivery`); the
        // business clock of this rehearsal is a file, which production refuses.
        config.payday.payment_url = Some(payments.url.clone());
        config.payday.smtp = Some(smtp.address.clone());
        config.payday.smtp_tls = SmtpTls::Starttls;
    })
    .await;
    let accountant = app.user("accountant", "ada").await;
    app.ok(&accountant, CLOSE, json!({ "day": "2026-03-01" }))
        .await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'PAID' AND settled_by = 'payment-system'",
        1,
    )
    .await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM mail WHERE status = 'SENT' AND sent_via = 'smtp'",
        1,
    )
    .await;
    let paid = payments.paid();
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0].1["popugId"], alice.key.as_str());
    assert_eq!(paid[0].1["amount"], 19);
    let messages = smtp.messages.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].0, vec!["<alice@uberpopug.test>".to_owned()]);
    assert!(
        messages[0].1.contains("Closing balance"),
        "{}",
        messages[0].1
    );
    assert_eq!(
        smtp.upgraded.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the message went over the upgraded session"
    );
}

async fn an_untrusted_certificate_is_refused(database: TestDatabase) {
    let company = Pki::new("UberPopug test CA");
    let stranger = Pki::new("Somebody else's CA");
    let payments = PaymentSystem::start_tls(0, stranger.server()).await;
    let smtp = SmtpServer::start_starttls(stranger.server()).await;
    let (app, _) = worker_due(database, &company, |config| {
        config.payday.payment_url = Some(payments.url.clone());
        config.payday.smtp = Some(smtp.address.clone());
        config.payday.smtp_tls = SmtpTls::Starttls;
        config.payday.delivery_max_attempts = 2;
    })
    .await;
    let admin = app.user("admin", "root").await;
    app.ok(&admin, CLOSE, json!({ "day": "2026-03-01" })).await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM payouts WHERE status = 'FAILED' AND attempts = 2",
        1,
    )
    .await;
    wait_for_count(
        &app.db,
        "SELECT COUNT(*) FROM mail WHERE status = 'FAILED' AND attempts = 2",
        1,
    )
    .await;
    // Nothing reached either server, and each says why.
    assert!(payments.requests().is_empty());
    assert!(smtp.messages.lock().expect("lock").is_empty());
    let listed = app
        .ok(
            &admin,
            "{ payouts(filter: { status: FAILED }) { edges { node { status lastError } } } \
               mailbox { edges { node { status lastError } } } }",
            json!({}),
        )
        .await;
    let payout = listed["payouts"]["edges"][0]["node"]["lastError"]
        .as_str()
        .unwrap_or_default();
    assert!(
        payout.contains("certificate") && payout.contains("UnknownIssuer"),
        "{listed}"
    );
    let mail = listed["mailbox"]["edges"][0]["node"]["lastError"]
        .as_str()
        .unwrap_or_default();
    assert!(mail.contains("UnknownIssuer"), "{listed}");
}

async fn production_refuses_plain_delivery(database: TestDatabase) {
    let production = |adjust: &dyn Fn(&mut Config)| {
        let mut config =
            crate::helpers::config(Some(database.url.clone()), database.folder().to_path_buf());
        config.server.env = Environment::Production;
        adjust(&mut config);
        config
    };
    let refusal = |config: Config| async move {
        match App::build(&config).await {
            Ok(_) => None,
            Err(error) => Some(format!("{error:#}")),
        }
    };
    let http = production(&|config| {
        config.payday.payment_url = Some("http://payments.internal/payouts".into());
    });
    let said = refusal(http.clone()).await.expect("plain HTTP is refused");
    assert!(said.contains("ATES_PAYMENT_URL is plain http://"), "{said}");
    let smtp = production(&|config| {
        config.payday.smtp = Some("relay.internal".into());
        config.payday.smtp_tls = SmtpTls::None;
    });
    let said = refusal(smtp.clone()).await.expect("plain SMTP is refused");
    assert!(said.contains("ATES_SMTP_TLS=none"), "{said}");
    // Allowed on purpose, both start; so does either in development.
    for mut config in [http.clone(), smtp.clone()] {
        config.payday.allow_plaintext = true;
        assert_eq!(refusal(config).await, None);
    }
    for mut config in [http, smtp] {
        config.server.env = Environment::Development;
        assert_eq!(refusal(config).await, None);
    }
}
