//! Email notifications (`[notify.email]`) through lettre's SMTP client over
//! rustls (aws-lc-rs, the one provider of the process).
//!
//! The `smtp` URL ([`crate::config::smtp`]) says how to reach the relay.
//! `ca` adds a CA to the system roots (a private relay's certificate).

use crate::config::smtp::{parse_smtp_url, TlsMode};
use crate::config::EmailSettings;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

use crate::notify::notice::Notice;

const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A ready SMTP client with the envelope to use.
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Mailer {
    /// Builds the client; fails on a bad URL, address or CA file.
    pub(crate) fn new(settings: &EmailSettings) -> Result<Mailer, String> {
        let url = parse_smtp_url(settings.smtp.expose())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.clone())
            .port(url.port)
            .timeout(Some(SMTP_TIMEOUT));
        if url.mode != TlsMode::None {
            let mut params = TlsParameters::builder(url.host.clone());
            if let Some(ca) = &settings.ca {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build_rustls().map_err(|e| e.to_string())?;
            builder = builder.tls(match url.mode {
                TlsMode::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some((user, pass)) = url.credentials {
            builder = builder.credentials(Credentials::new(user, pass.expose().to_owned()));
        }
        let from = settings
            .from
            .parse()
            .map_err(|e| format!("from `{}`: {e}", settings.from))?;
        let to = settings
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| format!("to `{t}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Mailer {
            transport: builder.build(),
            from,
            to,
        })
    }

    /// Sends one notice as a plain-text mail to every recipient.
    pub(crate) async fn send(&self, n: &Notice) -> Result<(), String> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(format!("[warren] {} {}", n.event, n.subject))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let body = format!(
            "Event:   {}\nSubject: {}\nAt:      {}\nId:      {}\n\n{}\n",
            n.event,
            n.subject,
            n.at,
            n.id,
            serde_json::to_string_pretty(&n.detail).unwrap_or_default()
        );
        let message = message.body(body).map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
