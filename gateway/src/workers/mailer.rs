//! Mail to popugs: over SMTP, or kept in the mailbox table when no server is configured.

use accounting_domain::Mail;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

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
                    .map_err(|e| format!("SMTP: {e}"))?;
                Ok("smtp")
            }
        }
    }
}
