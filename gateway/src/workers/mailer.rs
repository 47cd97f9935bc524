//! Mail to popugs: over SMTP with STARTTLS or TLS, or kept in the mailbox table when no server
//! is configured.

use std::time::Duration;

use accounting_domain::Mail;
use anyhow::Context as _;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::config::{Config, SmtpTls};

/// Where mail goes.
pub enum Mailer {
    /// No SMTP server: mail stays in the mailbox table, for admins to read.
    Mailbox,
    Smtp {
        /// Boxed: with its TLS settings it is large, and there is one per gateway.
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
}

impl Mailer {
    /// The SMTP server `ATES_SMTP` names, reached as `ATES_SMTP_TLS` says, trusting the
    /// system's roots and `trusted` (PEM) besides. Plain SMTP only where `plaintext_allowed`.
    pub(super) fn from_config(
        config: &Config,
        trusted: Option<&[u8]>,
        plaintext_allowed: bool,
    ) -> anyhow::Result<Self> {
        let payday = &config.payday;
        let Some(server) = &payday.smtp else {
            tracing::info!(
                "no SMTP server configured (ATES_SMTP): mail to popugs is kept in the mailbox"
            );
            return Ok(Self::Mailbox);
        };
        let (host, port) = match server.rsplit_once(':') {
            Some((host, port)) => (
                host.to_owned(),
                port.parse::<u16>()
                    .with_context(|| format!("ATES_SMTP: {port:?} is not a port"))?,
            ),
            None => (server.clone(), payday.smtp_tls.default_port()),
        };
        let tls = match payday.smtp_tls {
            SmtpTls::None if plaintext_allowed => {
                tracing::warn!("ATES_SMTP_TLS=none: mail travels to {host} unencrypted");
                Tls::None
            }
            SmtpTls::None => anyhow::bail!(
                "ATES_SMTP_TLS=none is plain SMTP, which production refuses: use starttls or \
                 tls, or set ATES_ALLOW_PLAINTEXT=true for a relay on a trusted network"
            ),
            SmtpTls::Starttls => Tls::Required(parameters(&host, trusted)?),
            SmtpTls::Tls => Tls::Wrapper(parameters(&host, trusted)?),
        };
        let transport = Box::new(
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .tls(tls)
                .timeout(Some(Duration::from_secs(payday.payment_timeout_secs)))
                .build(),
        );
        let from = payday
            .mail_from
            .parse()
            .with_context(|| format!("ATES_MAIL_FROM: {:?} is not an address", payday.mail_from))?;
        Ok(Self::Smtp { transport, from })
    }

    pub(super) async fn send(
        &self,
        mail: &Mail,
        address: Option<&str>,
    ) -> Result<&'static str, String> {
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
                    .map_err(|e| format!("SMTP: {}", super::causes(&e)))?;
                Ok("smtp")
            }
        }
    }
}

/// TLS to `host` with rustls: its certificate must name it and chain to the system's roots or
/// to `trusted`.
fn parameters(host: &str, trusted: Option<&[u8]>) -> anyhow::Result<TlsParameters> {
    let mut parameters = TlsParameters::builder(host.to_owned());
    if let Some(pem) = trusted {
        let certificates = Certificate::from_pem(pem)
            .context("ATES_TLS_CA_FILE holds no usable PEM certificate")?;
        parameters = parameters.add_root_certificate(certificates);
    }
    parameters
        .build_rustls()
        .context("cannot set up TLS for the SMTP server")
}
