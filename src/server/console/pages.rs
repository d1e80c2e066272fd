//! The console's pages, as maud templates: every `(value)` interpolated is HTML-escaped, and no
//! page holds inline script or style (the CSP forbids them).

use maud::{DOCTYPE, Markup, html};

use super::dates;
use super::{ClientForm, segment};
use crate::server::AuditKind;
use crate::server::store::{
    ApprovalDecision, AuditRecord, ClientActivity, ClientRecord, ClientStatus, GrantType,
    TokenRecord,
};

/// What every page needs to know.
pub(super) struct Page<'a> {
    pub(super) prefix: &'a str,
    pub(super) user: Option<&'a str>,
    pub(super) csrf: Option<&'a str>,
}

/// An error shown beside a form field.
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) message: String,
}

/// What a redirect after an action says on the client's page (`?done=`): fixed texts, so
/// nothing from the URL is reflected.
#[derive(Clone, Copy)]
pub(super) enum Notice {
    Approved,
    Rejected,
    Enabled,
    Disabled,
    Changed,
    Revoked,
}

impl Notice {
    pub(super) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "approved" => Notice::Approved,
            "rejected" => Notice::Rejected,
            "enabled" => Notice::Enabled,
            "disabled" => Notice::Disabled,
            "changed" => Notice::Changed,
            "revoked" => Notice::Revoked,
            _ => return None,
        })
    }

    fn text(self) -> &'static str {
        match self {
            Notice::Approved => "Your approval was recorded.",
            Notice::Rejected => "Your rejection was recorded.",
            Notice::Enabled => "The client is enabled.",
            Notice::Disabled => "The client is disabled and its tokens are revoked.",
            Notice::Changed => "The client was changed.",
            Notice::Revoked => "The token was revoked.",
        }
    }
}

/// The clients page: the console's root (`/console`, since a router nested at `/console`
/// does not answer `/console/`).
pub(super) fn home(prefix: &str) -> &str {
    if prefix.is_empty() { "/" } else { prefix }
}

pub(super) fn layout(page: &Page<'_>, title: &str, body: Markup) -> Markup {
    let prefix = page.prefix;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · OAuth clients" }
                link rel="stylesheet" href={ (prefix) "/assets/console.css" };
                script src={ (prefix) "/assets/console.js" } defer {}
            }
            body {
                header {
                    a.brand href=(home(prefix)) { "OAuth clients" }
                    @if let (Some(user), Some(csrf)) = (page.user, page.csrf) {
                        nav {
                            a href=(home(prefix)) { "Clients" }
                            a href={ (prefix) "/clients/new" } { "Register" }
                            a href={ (prefix) "/audit" } { "Audit log" }
                        }
                        form.logout method="post" action={ (prefix) "/logout" } {
                            span.user { (user) }
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(super) fn message(prefix: &str, title: &str, text: &str) -> Markup {
    html! {
        h1 { (title) }
        p.message { (text) }
        p { a href=(home(prefix)) { "Back to the clients" } }
    }
}

fn status_badge(status: ClientStatus) -> Markup {
    html! { span class={ "status " (status.as_str()) } { (status.as_str()) } }
}

fn time(seconds: Option<u64>) -> Markup {
    html! {
        @match seconds {
            Some(s) => time datetime=(s) { (dates::format(s)) },
            None => span.muted { "—" },
        }
    }
}

pub(super) fn clients(
    prefix: &str,
    clients: &[(ClientRecord, Option<ClientActivity>)],
    filter: Option<ClientStatus>,
    own_id: &str,
) -> Markup {
    let statuses = [
        ClientStatus::Pending,
        ClientStatus::Approved,
        ClientStatus::Rejected,
        ClientStatus::Disabled,
    ];
    let count = |status: ClientStatus| clients.iter().filter(|(c, _)| c.status == status).count();
    html! {
        h1 { "Clients" }
        nav.filter aria-label="Filter by status" {
            a href=(home(prefix)) class=[filter.is_none().then_some("current")] {
                "All (" (clients.len()) ")"
            }
            @for status in statuses {
                a href={ (home(prefix)) "?status=" (status.as_str()) }
                    class=[(filter == Some(status)).then_some("current")] {
                    (status.as_str()) " (" (count(status)) ")"
                }
            }
        }
        @let shown: Vec<_> = clients.iter().filter(|(c, _)| filter.is_none_or(|f| c.status == f)).collect();
        @if shown.is_empty() {
            p.muted { "No clients here." }
        } @else {
            table.clients {
                thead { tr {
                    th { "Name" } th { "Client id" } th { "Status" } th { "Grant types" }
                    th { "Scopes" } th { "Last token issued" } th { "Tokens (24 h)" }
                } }
                tbody {
                    @for (client, activity) in shown {
                        tr {
                            td { a href={ (prefix) "/clients/" (segment(&client.client_id)) } { (client.name) }
                                 @if client.client_id == own_id { " " span.muted { "(this console)" } } }
                            td { code { (client.client_id) } }
                            td { (status_badge(client.status)) }
                            td { @for grant in &client.grant_types { span.tag { (grant.as_str()) } " " } }
                            td { (client.scopes.join(" ")) }
                            td { (time(activity.as_ref().map(|a| a.last_issued_at))) }
                            td.number { (activity.as_ref().map_or(0, |a| a.issued_since)) }
                        }
                    }
                }
            }
        }
        p { a.button href={ (prefix) "/clients/new" } { "Register a client" } }
    }
}

fn error_for<'a>(errors: &'a [Field], name: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.message.as_str())
}

/// A labelled text field with its error beside it.
fn text_field(
    errors: &[Field],
    name: &'static str,
    label: &str,
    value: &str,
    hint: &str,
    required: bool,
) -> Markup {
    let error = error_for(errors, name);
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            input type="text" id=(name) name=(name) value=(value) required[required]
                aria-invalid=[error.map(|_| "true")] aria-describedby={ (name) "-hint" };
            @if let Some(error) = error { p.error id={ (name) "-error" } { (error) } }
            p.hint id={ (name) "-hint" } { (hint) }
        }
    }
}

fn lines_field(
    errors: &[Field],
    name: &'static str,
    label: &str,
    lines: &[String],
    hint: &str,
) -> Markup {
    let error = error_for(errors, name);
    html! {
        div.field.invalid[error.is_some()] {
            label for=(name) { (label) }
            textarea id=(name) name=(name) rows="3" aria-invalid=[error.map(|_| "true")] { (lines.join("\n")) }
            @if let Some(error) = error { p.error id={ (name) "-error" } { (error) } }
            p.hint { (hint) }
        }
    }
}

/// The register form (`editing` `None`) or the change form of client `editing`. `confirm`:
/// the change revokes this many tokens and waits for confirmation.
pub(super) fn client_form(
    prefix: &str,
    csrf: &str,
    editing: Option<&str>,
    form: &ClientForm,
    errors: &[Field],
    confirm: Option<usize>,
) -> Markup {
    let action = match editing {
        Some(id) => format!("{prefix}/clients/{}/edit", segment(id)),
        None => format!("{prefix}/clients"),
    };
    let grant_error = error_for(errors, "grant_types");
    let lifetime_hint =
        "e.g. 1y 2m 3w 7d 5h 30min 15s, or unlimited; empty for the server's default";
    html! {
        h1 { @if let Some(id) = editing { "Change " code { (id) } } @else { "Register a client" } }
        @if !errors.is_empty() {
            div.alert.error role="alert" {
                p { "The client was not saved: correct the fields marked below." }
                ul { @for e in errors { li { a href={ "#" (e.name) } { (e.name) } ": " (e.message) } } }
            }
        }
        @if let Some(count) = confirm {
            div.alert.warning role="alert" {
                p { strong { "This change narrows the client and revokes " (count) " active token(s) that no longer fit it." } }
                p { "Check the values below, then confirm." }
            }
        }
        form.client method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            (text_field(errors, "name", "Name", &form.name, "Shown to operators and users.", true))
            @if editing.is_none() {
                (text_field(errors, "client_id", "Client id", &form.client_id,
                    "Optional: 1–128 characters of A-Z a-z 0-9 - . _ ~; generated when empty.", false))
            }
            @if editing.is_none() {
                @let method_error = error_for(errors, "token_endpoint_auth_method");
                div.field.invalid[method_error.is_some()] {
                    label.check {
                        input type="checkbox" name="public" value="1" checked[form.public];
                        " Public client: no secret (a native or browser app, a CLI). It may use \
                          only authorization_code with PKCE and refresh_token."
                    }
                    @if let Some(error) = method_error { p.error id="token_endpoint_auth_method-error" { (error) } }
                }
            }
            (lines_field(errors, "contacts", "Contacts", &form.contacts,
                "E-mail addresses, one per line: told when the registration is decided."))
            (lines_field(errors, "redirect_uris", "Redirect URIs", &form.redirect_uris,
                "One per line; needed for authorization_code."))
            fieldset.field.invalid[grant_error.is_some()] {
                legend { "Grant types" }
                @for grant in GrantType::ALL {
                    label.check {
                        input type="checkbox" name="grant_types" value=(grant.as_str())
                            checked[form.grant_types.iter().any(|g| g == grant.as_str())];
                        " " (grant.as_str())
                    }
                }
                @if let Some(error) = grant_error { p.error id="grant_types-error" { (error) } }
            }
            (text_field(errors, "scopes", "Scopes", &form.scopes, "Space-separated.", false))
            (text_field(errors, "default_scopes", "Default scopes", &form.default_scopes,
                "Granted when a request names none; empty for all the scopes.", false))
            (text_field(errors, "access_token_lifetime", "Access-token lifetime",
                &form.access_token_lifetime, lifetime_hint, false))
            (text_field(errors, "refresh_token_lifetime", "Refresh-token lifetime",
                &form.refresh_token_lifetime, lifetime_hint, false))
            @if let Some(count) = confirm {
                input type="hidden" name="confirm" value="1";
                button.danger type="submit" { "Confirm: save and revoke " (count) " token(s)" }
                " " a href={ (prefix) "/clients/" (segment(editing.unwrap_or_default())) } { "Cancel" }
            } @else {
                button type="submit" { @if editing.is_some() { "Save" } @else { "Register" } }
            }
        }
    }
}

/// The page that shows a secret, once.
pub(super) fn secret_shown(prefix: &str, client: &ClientRecord, secret: &str, new: bool) -> Markup {
    html! {
        h1 { @if new { "Client registered" } @else { "New secret" } }
        p {
            "Client " strong { (client.name) } " (" code { (client.client_id) } ") is "
            (status_badge(client.status)) "."
            @if client.status == ClientStatus::Pending { " It can get tokens once its registration is approved." }
        }
        div.secret {
            p { strong { "Client secret" } }
            p.value { code id="secret" { (secret) } " " button.copy type="button" data-copy="secret" hidden { "Copy" } }
            p.alert.warning role="alert" {
                strong { "This is the only time the secret is shown: you will not see it again." }
                " Copy it now and keep it safe. If it is lost, rotate the secret."
            }
        }
        p { a href={ (prefix) "/clients/" (segment(&client.client_id)) } { "Go to the client" } }
    }
}

/// What a client's page shows.
pub(super) struct ClientView<'a> {
    pub(super) client: &'a ClientRecord,
    pub(super) decisions: &'a [ApprovalDecision],
    pub(super) tokens: &'a [TokenRecord],
    /// The console's own client: no actions.
    pub(super) own: bool,
}

pub(super) fn client(
    prefix: &str,
    csrf: &str,
    view: &ClientView<'_>,
    notice: Option<Notice>,
) -> Markup {
    let client = view.client;
    let base = format!("{prefix}/clients/{}", segment(&client.client_id));
    let lifetime = |l: Option<crate::server::TokenLifetime>| {
        l.map_or_else(|| "server default".to_owned(), |l| l.to_string())
    };
    html! {
        h1 { (client.name) " " (status_badge(client.status)) }
        @if let Some(notice) = notice { p.alert.ok role="status" { (notice.text()) } }
        dl.client {
            dt { "Client id" } dd { code { (client.client_id) } }
            dt { "Registered" } dd { (time(Some(client.created_at))) }
            dt { "Type" } dd {
                @if client.is_public() { "public: no secret (a native or browser app, a CLI)" }
                @else { "confidential: authenticates with its secret" }
            }
            dt { "Contacts" } dd { @if client.contacts.is_empty() { span.muted { "none" } } @for c in &client.contacts { (c) br; } }
            dt { "Redirect URIs" } dd { @if client.redirect_uris.is_empty() { span.muted { "none" } } @for u in &client.redirect_uris { code { (u) } br; } }
            dt { "Grant types" } dd { @for g in &client.grant_types { span.tag { (g.as_str()) } " " } }
            dt { "Scopes" } dd { (client.scopes.join(" ")) }
            dt { "Default scopes" } dd { (client.default_scopes.join(" ")) }
            dt { "Access-token lifetime" } dd { (lifetime(client.access_token_lifetime)) }
            dt { "Refresh-token lifetime" } dd { (lifetime(client.refresh_token_lifetime)) }
        }
        @if view.own {
            p.muted { "This is the console's own client; the console manages it." }
        } @else {
            section.actions {
                h2 { "Actions" }
                @if client.status == ClientStatus::Pending {
                    div.decide {
                        form method="post" action={ (base) "/do/approve" } {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="approve-comment" { "Comment (optional)" }
                            textarea id="approve-comment" name="comment" rows="2" maxlength="1000" {}
                            button type="submit" { "Approve" }
                        }
                        form method="post" action={ (base) "/do/reject" } {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="reject-comment" { "Comment (optional)" }
                            textarea id="reject-comment" name="comment" rows="2" maxlength="1000" {}
                            button.danger type="submit" { "Reject" }
                        }
                    }
                }
                p.buttons {
                    a.button href={ (base) "/edit" } { "Change" }
                    " "
                    @if !client.is_public() {
                        a.button href={ (base) "/confirm/secret" } { "Rotate secret" }
                        " "
                    }
                    @if client.status == ClientStatus::Disabled {
                        a.button href={ (base) "/confirm/enable" } { "Enable" }
                    } @else {
                        a.button.danger href={ (base) "/confirm/disable" } { "Disable" }
                    }
                    " "
                    a.button.danger href={ (base) "/confirm/delete" } { "Delete" }
                }
            }
        }
        section {
            h2 { "Approval decisions" }
            @if view.decisions.is_empty() {
                p.muted { "No decisions recorded." }
            } @else {
                table {
                    thead { tr { th { "When" } th { "Approver" } th { "Decision" } th { "As member of" } th { "Comment" } } }
                    tbody {
                        @for d in view.decisions {
                            tr {
                                td { (time(Some(d.decided_at))) }
                                td { (d.approver) }
                                td { span class={ "decision " (d.decision.as_str()) } { (d.decision.as_str()) } }
                                td { (d.groups.join(", ")) }
                                td { @if let Some(c) = &d.comment { (c) } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Active tokens (" (view.tokens.len()) ")" }
            @if view.tokens.is_empty() {
                p.muted { "No active tokens." }
            } @else {
                table.tokens {
                    thead { tr { th { "Id" } th { "Kind" } th { "Subject" } th { "Scopes" } th { "Issued" } th { "Expires" } th {} } }
                    tbody {
                        @for t in view.tokens {
                            tr {
                                td { code { (t.id) } }
                                td { (t.kind.as_str()) }
                                td { (t.subject) }
                                td { (t.scopes.join(" ")) }
                                td { (time(Some(t.issued_at))) }
                                td { @if t.expires_at.is_some() { (time(t.expires_at)) } @else { "never" } }
                                td {
                                    form method="post" action={ (base) "/tokens/" (t.id) "/revoke" } {
                                        input type="hidden" name="csrf" value=(csrf);
                                        button.small.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href={ (prefix) "/audit?client_id=" (client.client_id) } { "This client's audit log" } }
    }
}

/// The confirmation step of `action` (disable, enable, delete, secret).
pub(super) fn confirm(
    prefix: &str,
    csrf: &str,
    client: &ClientRecord,
    action: &str,
    tokens: usize,
) -> Markup {
    let base = format!("{prefix}/clients/{}", segment(&client.client_id));
    let (question, consequence, button) = match action {
        "disable" => (
            "Disable this client?",
            format!(
                "It can no longer get tokens, and its {tokens} active token(s) are revoked now."
            ),
            "Disable",
        ),
        "enable" => (
            "Enable this client?",
            "It can get tokens again with its current secret.".to_owned(),
            "Enable",
        ),
        "delete" => (
            "Delete this client?",
            format!(
                "It is removed for good and its {tokens} active token(s) are revoked now. This cannot be undone."
            ),
            "Delete",
        ),
        _ => (
            "Rotate this client's secret?",
            "The current secret stops working at once; the new one is shown once.".to_owned(),
            "Rotate secret",
        ),
    };
    html! {
        h1 { (question) }
        p { "Client " strong { (client.name) } " (" code { (client.client_id) } ")." }
        p.alert.warning { (consequence) }
        form method="post" action={ (base) "/do/" (action) } {
            input type="hidden" name="csrf" value=(csrf);
            button.danger[action != "enable"] type="submit" { (button) }
            " " a href=(base) { "Cancel" }
        }
    }
}

/// The audit-log filter as typed.
pub(super) struct AuditFilter {
    pub(super) client_id: String,
    pub(super) kind: String,
    pub(super) since: String,
    pub(super) until: String,
}

pub(super) fn audit(
    prefix: &str,
    filter: &AuditFilter,
    errors: &[Field],
    page: Option<&(Vec<AuditRecord>, Option<u64>)>,
) -> Markup {
    let next = page.and_then(|(_, next)| *next).map(|cursor| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("client_id", &filter.client_id),
            ("kind", &filter.kind),
            ("since", &filter.since),
            ("until", &filter.until),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.append_pair("cursor", &cursor.to_string());
        format!("{prefix}/audit?{}", query.finish())
    });
    html! {
        h1 { "Audit log" }
        form.filters method="get" action={ (prefix) "/audit" } {
            (text_field(errors, "client_id", "Client id", &filter.client_id, "", false))
            div.field.invalid[error_for(errors, "kind").is_some()] {
                label for="kind" { "Kind" }
                select id="kind" name="kind" {
                    option value="" { "any" }
                    @for kind in AuditKind::ALL {
                        option value=(kind.as_str()) selected[filter.kind == kind.as_str()] { (kind.as_str()) }
                    }
                }
                @if let Some(error) = error_for(errors, "kind") { p.error { (error) } }
            }
            (text_field(errors, "since", "From", &filter.since, "UTC: 2026-12-03 or 2026-12-03T14:30", false))
            (text_field(errors, "until", "Until", &filter.until, "UTC, exclusive", false))
            button type="submit" { "Filter" }
        }
        @if let Some((events, _)) = page {
            @if events.is_empty() {
                p.muted { "No events." }
            } @else {
                table.audit {
                    thead { tr { th { "#" } th { "When" } th { "Kind" } th { "Client" } th { "Actor" } th { "Detail" } } }
                    tbody {
                        @for e in events {
                            tr {
                                td.number { (e.seq) }
                                td { (time(Some(e.at))) }
                                td { span.tag { (e.kind) } }
                                td { @if let Some(c) = &e.client_id { a href={ (prefix) "/clients/" (segment(c)) } { code { (c) } } } }
                                td { @if let Some(a) = &e.actor { (a) } }
                                td { code.detail { (e.detail.to_string()) } }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = next { p { a.button href=(next) { "Older events" } } }
        }
    }
}
