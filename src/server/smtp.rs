//! [`SmtpNotifier`]: the [`Notifier`] that sends e-mail, with lettre.

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::HookFuture;
use super::approval::{Notification, NotificationKind, Notifier};
use crate::error::ConfigError;

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 4] = ["client_name", "client_id", "decided_by", "comment"];

/// A subject and a body, with `{client_name}`, `{client_id}`, `{decided_by}` and `{comment}`
/// replaced by the notification's values (`{{` and `}}` for literal braces).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    subject: String,
    body: String,
}

impl Template {
    fn default_for(kind: NotificationKind) -> Self {
        let (subject, body) = match kind {
            NotificationKind::Submitted => (
                "OAuth client registration waiting for your approval: {client_name}",
                "A client registration waits for your decision.\n\n\
                 Client:    {client_name}\n\
                 Client ID: {client_id}\n\n\
                 Approve or reject it in the admin console, or with the admin API:\n\
                 POST /clients/{client_id}/approve or /reject.\n",
            ),
            NotificationKind::Approved => (
                "Your OAuth client {client_name} is approved",
                "Your client registration is approved: it can now get tokens.\n\n\
                 Client:      {client_name}\n\
                 Client ID:   {client_id}\n\
                 Approved by: {decided_by}\n\
                 Comment:     {comment}\n",
            ),
            _ => (
                "Your OAuth client {client_name} is rejected",
                "Your client registration is rejected: it will not get tokens.\n\n\
                 Client:      {client_name}\n\
                 Client ID:   {client_id}\n\
                 Rejected by: {decided_by}\n\
                 Comment:     {comment}\n",
            ),
        };
        Self {
            subject: subject.to_owned(),
            body: body.to_owned(),
        }
    }
}

/// Fills `template`'s placeholders with `value(name)`, in one pass: a value that contains
/// `{…}` is not expanded again. Written here rather than with a template engine: three fixed
/// plain-text messages with four placeholders and no logic.
fn render(template: &str, value: &dyn Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| "an unclosed `{` (write `{{` for a brace)".to_owned())?;
            let name = &after[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; known: {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ));
            }
            out.push_str(&value(name));
            rest = &after[end + 1..];
        } else {
            return Err("a lone `}` (write `}}` for a brace)".to_owned());
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// How the notifier reaches its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    StartTls,
    PlainLoopback,
}

/// Configures an [`SmtpNotifier`].
#[derive(Clone)]
#[must_use]
pub struct SmtpNotifierBuilder {
    host: String,
    port: Option<u16>,
    from: String,
    security: Security,
    credentials: Option<(String, String)>,
    timeout: Duration,
    templates: [(NotificationKind, Template); 3],
}

impl std::fmt::Debug for SmtpNotifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifierBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpNotifierBuilder {
    /// The SMTP port. Defaults to 587 (submission) with STARTTLS, 25 in plain.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Authenticates with a user name and password (sent only over TLS). Defaults to none.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Talks plain SMTP, without TLS: allowed only to a loopback host (`localhost`,
    /// `127.0.0.1`, `::1`), e.g. a local relay. Defaults to STARTTLS, required.
    pub fn plain_on_loopback(mut self) -> Self {
        self.security = Security::PlainLoopback;
        self
    }

    /// How long one delivery attempt may take. Defaults to 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Replaces the subject and body of one kind of message. Both may use `{client_name}`,
    /// `{client_id}`, `{decided_by}` and `{comment}`; `{{` and `}}` are literal braces.
    /// Checked by [`build`](Self::build).
    pub fn template(
        mut self,
        kind: NotificationKind,
        subject: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        if let Some((_, template)) = self.templates.iter_mut().find(|(k, _)| *k == kind) {
            *template = Template {
                subject: subject.into(),
                body: body.into(),
            };
        }
        self
    }

    /// Checks the configuration: a valid sender address, templates that render, plain SMTP
    /// only to a loopback host, credentials only with STARTTLS.
    pub fn build(self) -> Result<SmtpNotifier, ConfigError> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| ConfigError::new(format!("SmtpNotifier: sender {:?}: {e}", self.from)))?;
        for (kind, template) in &self.templates {
            for text in [&template.subject, &template.body] {
                render(text, &|_| String::new()).map_err(|e| {
                    ConfigError::new(format!("SmtpNotifier: the {} template: {e}", kind.as_str()))
                })?;
            }
        }
        let transport = match self.security {
            Security::StartTls => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host)
                    .map_err(|e| ConfigError::new(format!("SmtpNotifier: {e}")))?
                    .port(self.port.unwrap_or(587))
                    .timeout(Some(self.timeout));
                if let Some((user, password)) = self.credentials {
                    builder = builder.credentials(Credentials::new(user, password));
                }
                builder.build()
            }
            Security::PlainLoopback => {
                let loopback = self.host.eq_ignore_ascii_case("localhost")
                    || self
                        .host
                        .trim_matches(['[', ']'])
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(ConfigError::new(format!(
                        "SmtpNotifier: plain SMTP (no TLS) only to a loopback host, not {:?}",
                        self.host
                    )));
                }
                if self.credentials.is_some() {
                    return Err(ConfigError::new(
                        "SmtpNotifier: credentials are sent only over STARTTLS",
                    ));
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
                    .port(self.port.unwrap_or(25))
                    .timeout(Some(self.timeout))
                    .build()
            }
        };
        Ok(SmtpNotifier {
            transport,
            from,
            templates: self.templates,
        })
    }
}

/// A [`Notifier`] that sends plain-text e-mail over SMTP (lettre): STARTTLS by default, plain
/// only to a loopback relay. Each message goes to the notification's recipients, with a
/// subject and body from templates that have defaults and can be replaced.
///
/// ```no_run
/// # fn f() -> Result<(), tower_oauth2::ConfigError> {
/// use tower_oauth2::server::{NotificationKind, SmtpNotifier};
/// let notifier = SmtpNotifier::builder("smtp.example.com", "OAuth <oauth@example.com>")
///     .credentials("oauth@example.com", "app password")
///     .template(
///         NotificationKind::Approved,
///         "{client_name} may now call our APIs",
///         "Approved by {decided_by}: {comment}\n",
///     )
///     .build()?;
/// # let _ = notifier; Ok(()) }
/// ```
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    templates: [(NotificationKind, Template); 3],
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// Sends through the SMTP server at `host`, from the address `from`
    /// (`"Name <address>"` or `address`).
    pub fn builder(host: impl Into<String>, from: impl Into<String>) -> SmtpNotifierBuilder {
        SmtpNotifierBuilder {
            host: host.into(),
            port: None,
            from: from.into(),
            security: Security::StartTls,
            credentials: None,
            timeout: Duration::from_secs(10),
            templates: [
                NotificationKind::Submitted,
                NotificationKind::Approved,
                NotificationKind::Rejected,
            ]
            .map(|kind| (kind, Template::default_for(kind))),
        }
    }

    async fn send(&self, notification: &Notification) -> Result<(), String> {
        let template = self
            .templates
            .iter()
            .find(|(kind, _)| *kind == notification.kind)
            .map(|(_, t)| t)
            .ok_or("no template for this kind of notification")?;
        let value = |name: &str| -> String {
            match name {
                "client_name" => notification.client_name.clone(),
                "client_id" => notification.client_id.clone(),
                "decided_by" => notification.decided_by.clone().unwrap_or_default(),
                "comment" => notification.comment.clone().unwrap_or_else(|| "-".into()),
                _ => String::new(),
            }
        };
        // No line break may reach a header.
        let subject: String = render(&template.subject, &value)?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let body = render(&template.body, &value)?;
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for recipient in &notification.recipients {
            let mailbox: Mailbox = recipient
                .parse()
                .map_err(|e| format!("recipient {recipient:?}: {e}"))?;
            message = message.to(mailbox);
        }
        let message = message
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

impl Notifier for SmtpNotifier {
    fn notify<'a>(&'a self, notification: &'a Notification) -> HookFuture<'a, Result<(), String>> {
        Box::pin(self.send(notification))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_once_and_refuse_unknown_placeholders() {
        let value = |name: &str| match name {
            "client_name" => "{client_id} <b>".to_owned(),
            "client_id" => "abc".to_owned(),
            _ => String::new(),
        };
        assert_eq!(
            render("{{x}} {client_name}/{client_id}", &value),
            Ok("{x} {client_id} <b>/abc".to_owned()),
            "a value is not expanded again"
        );
        assert!(render("{secret}", &value).is_err());
        assert!(render("{client_name", &value).is_err());
        assert!(render("a } b", &value).is_err());
    }

    #[test]
    fn plain_smtp_only_on_loopback_and_a_valid_sender() {
        assert!(
            SmtpNotifier::builder("127.0.0.1", "a@b.example")
                .plain_on_loopback()
                .build()
                .is_ok()
        );
        assert!(
            SmtpNotifier::builder("[::1]", "a@b.example")
                .plain_on_loopback()
                .build()
                .is_ok()
        );
        assert!(
            SmtpNotifier::builder("mail.example.com", "a@b.example")
                .plain_on_loopback()
                .build()
                .is_err()
        );
        assert!(
            SmtpNotifier::builder("localhost", "not an address")
                .plain_on_loopback()
                .build()
                .is_err()
        );
        assert!(
            SmtpNotifier::builder("localhost", "a@b.example")
                .template(NotificationKind::Approved, "{password}", "")
                .build()
                .is_err()
        );
    }
}
