//! Approval of client registrations by groups of approvers (CentraSite's workflow), and the
//! notifications that go with it.
//!
//! With [`ApprovalPolicy::Groups`](super::ApprovalPolicy::Groups), a new client is registered
//! pending. Approvers decide through the admin API (`POST /clients/{id}/approve` or
//! `/reject`), each decision recorded with who, when and an optional comment. The client is
//! approved when **every** group's rule is satisfied — [`ApprovalRule::Any`]: one approval by a
//! member; [`ApprovalRule::All`]: an approval by every listed member, in any order — and
//! rejected by the first rejection of any member. The decision and the status change it
//! settles are one atomic store step ([`Store::decide`](super::store::Store::decide)), so
//! approvers deciding at the same moment end with exactly one status change.
//!
//! Who is in which group comes from the app: the group's listed members, the groups your
//! [`ApproverDirectory`] names for a subject, or a claim of the approver's access token
//! ([`ApproverGroups::membership_claim`], e.g. `groups`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::HookFuture;
use super::store::{ApprovalDecision, ClientRecord, ClientStatus, Decision};
use crate::error::ConfigError;

/// How a group's members decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalRule {
    /// One approval by any member satisfies the group.
    Any,
    /// Every listed member must approve, in any order.
    All,
}

/// A named group of approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverGroup {
    name: String,
    rule: ApprovalRule,
    members: Vec<String>,
    notify: Vec<String>,
}

impl ApproverGroup {
    /// A group named `name` (what a directory or a token claim names it) deciding by `rule`.
    pub fn new(name: impl Into<String>, rule: ApprovalRule) -> Self {
        Self {
            name: name.into(),
            rule,
            members: Vec::new(),
            notify: Vec::new(),
        }
    }

    /// Subjects (`sub` of their tokens) that are members. Under [`ApprovalRule::All`] these
    /// are the approvers who must all approve.
    #[must_use]
    pub fn members<S: Into<String>>(mut self, subjects: impl IntoIterator<Item = S>) -> Self {
        self.members.extend(subjects.into_iter().map(Into::into));
        self
    }

    /// E-mail addresses told when a registration waits for this group.
    #[must_use]
    pub fn notify<S: Into<String>>(mut self, addresses: impl IntoIterator<Item = S>) -> Self {
        self.notify.extend(addresses.into_iter().map(Into::into));
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its members decide.
    pub fn rule(&self) -> ApprovalRule {
        self.rule
    }

    /// Its listed members.
    pub fn listed_members(&self) -> &[String] {
        &self.members
    }
}

/// The approver groups of [`ApprovalPolicy::Groups`](super::ApprovalPolicy::Groups): every
/// group must be satisfied for a registration to be approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverGroups {
    groups: Vec<ApproverGroup>,
    claim: Option<String>,
}

impl ApproverGroups {
    /// Checks the groups: at least one; names non-empty and distinct; an
    /// [`ApprovalRule::All`] group lists its members; notification addresses are e-mail
    /// addresses.
    pub fn new(groups: impl IntoIterator<Item = ApproverGroup>) -> Result<Self, ConfigError> {
        let groups: Vec<ApproverGroup> = groups.into_iter().collect();
        if groups.is_empty() {
            return Err(ConfigError::new(
                "approver groups: at least one group is needed",
            ));
        }
        let mut names = BTreeSet::new();
        for group in &groups {
            if group.name.trim().is_empty() || !names.insert(group.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "approver groups: group names must be non-empty and distinct ({:?})",
                    group.name
                )));
            }
            if group.rule == ApprovalRule::All && group.members.is_empty() {
                return Err(ConfigError::new(format!(
                    "approver group {:?}: the rule All needs its members listed",
                    group.name
                )));
            }
            if let Some(bad) = group.notify.iter().find(|a| check_email(a).is_err()) {
                return Err(ConfigError::new(format!(
                    "approver group {:?}: {bad:?} is not an e-mail address",
                    group.name
                )));
            }
        }
        Ok(Self {
            groups,
            claim: None,
        })
    }

    /// Also takes group membership from this claim of the approver's access token: a string
    /// or an array of strings naming groups.
    #[must_use]
    pub fn membership_claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = Some(claim.into());
        self
    }

    /// The groups.
    pub fn groups(&self) -> &[ApproverGroup] {
        &self.groups
    }

    /// The groups `subject` belongs to: listed, named by the directory, or by the claim.
    pub(crate) fn groups_of(
        &self,
        subject: &str,
        claims: Option<&serde_json::Value>,
        directory: &[String],
    ) -> Vec<String> {
        let from_claim: Vec<&str> = match self
            .claim
            .as_deref()
            .and_then(|c| claims.and_then(|claims| claims.get(c)))
        {
            Some(serde_json::Value::String(one)) => vec![one.as_str()],
            Some(serde_json::Value::Array(many)) => {
                many.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        };
        self.groups
            .iter()
            .filter(|g| {
                g.members.iter().any(|m| m == subject)
                    || directory.contains(&g.name)
                    || from_claim.contains(&g.name.as_str())
            })
            .map(|g| g.name.clone())
            .collect()
    }

    /// The status `decisions` settle a pending registration at, if any: rejected by any
    /// rejection, approved when every group is satisfied.
    pub(crate) fn settle(&self, decisions: &[ApprovalDecision]) -> Option<ClientStatus> {
        if decisions.iter().any(|d| d.decision == Decision::Reject) {
            return Some(ClientStatus::Rejected);
        }
        let approved_by = |approver: &str| {
            decisions
                .iter()
                .any(|d| d.approver == approver && d.decision == Decision::Approve)
        };
        let satisfied = self.groups.iter().all(|g| match g.rule {
            ApprovalRule::Any => decisions
                .iter()
                .any(|d| d.decision == Decision::Approve && d.groups.contains(&g.name)),
            ApprovalRule::All => g.members.iter().all(|m| approved_by(m)),
        });
        satisfied.then_some(ClientStatus::Approved)
    }

    /// Everyone to tell of a registration waiting for approval.
    pub(crate) fn notify_addresses(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.groups.iter().flat_map(|g| &g.notify).collect();
        set.into_iter().cloned().collect()
    }
}

/// Names the approver groups a subject is in, for the app that keeps them elsewhere (LDAP, a
/// database). Groups listed with [`ApproverGroup::members`] need no directory.
pub trait ApproverDirectory: Send + Sync + 'static {
    /// The names of the groups `subject` belongs to.
    fn groups_of<'a>(&'a self, subject: &'a str) -> HookFuture<'a, Vec<String>>;
}

/// Checks an e-mail address: `local@domain`, printable ASCII without spaces, at most 254
/// characters. Deliberately simple: the mail server has the last word.
pub(crate) fn check_email(address: &str) -> Result<(), String> {
    let ok = address.len() <= 254
        && address.bytes().all(|b| b.is_ascii_graphic())
        && !address.contains(['<', '>', '(', ')', ',', ';', ':', '"', '\\', '[', ']'])
        && address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{:?} is not an e-mail address", printable(address)))
    }
}

fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(80).collect()
}

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

/// What a [`Notification`] announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotificationKind {
    /// A registration waits for approval (sent to the approvers).
    Submitted,
    /// A registration was approved (sent to the client's contacts).
    Approved,
    /// A registration was rejected (sent to the client's contacts).
    Rejected,
}

impl NotificationKind {
    /// `submitted`, `approved` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Submitted => "submitted",
            NotificationKind::Approved => "approved",
            NotificationKind::Rejected => "rejected",
        }
    }
}

/// A message for a [`Notifier`]. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// The client registered.
    pub client_id: String,
    /// Its name, as registered (user input: escape it wherever it is rendered as markup).
    pub client_name: String,
    /// Who to tell: e-mail addresses.
    pub recipients: Vec<String>,
    /// Who decided (approved and rejected).
    pub decided_by: Option<String>,
    /// The deciding approver's comment.
    pub comment: Option<String>,
}

/// Delivers [`Notification`]s: e-mail ([`SmtpNotifier`](super::SmtpNotifier), feature
/// `smtp`), a chat webhook, a ticket. An error is logged and the delivery tried again a few
/// times; it never undoes or delays the decision.
pub trait Notifier: Send + Sync + 'static {
    /// Delivers `notification`.
    fn notify<'a>(&'a self, notification: &'a Notification) -> HookFuture<'a, Result<(), String>>;
}

/// Pauses between the attempts of one delivery: four attempts in all.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(4),
];

/// Notifications waiting for delivery at most; beyond, new ones are dropped and logged.
const QUEUE: usize = 1024;

/// The queue to the delivery task.
pub(crate) struct Notifications {
    queue: Option<mpsc::Sender<Notification>>,
}

impl Notifications {
    /// Starts the delivery task for `notifier`, or does nothing without one.
    pub(crate) fn start(notifier: Option<Arc<dyn Notifier>>) -> Self {
        let Some(notifier) = notifier else {
            return Self { queue: None };
        };
        let (queue, mut receiver) = mpsc::channel::<Notification>(QUEUE);
        tokio::spawn(async move {
            while let Some(notification) = receiver.recv().await {
                deliver(&*notifier, &notification).await;
            }
        });
        Self { queue: Some(queue) }
    }

    /// Queues `notification` (if it has recipients); never waits.
    pub(crate) fn send(&self, notification: Notification) {
        let Some(queue) = &self.queue else { return };
        if notification.recipients.is_empty() {
            return;
        }
        if queue.try_send(notification).is_err() {
            tracing::error!(
                target: "tower_oauth2::server",
                "notification queue full: a notification is dropped"
            );
        }
    }

    /// The notification of `client`'s registration for the approvers.
    pub(crate) fn submitted(&self, client: &ClientRecord, groups: &ApproverGroups) {
        self.send(Notification {
            kind: NotificationKind::Submitted,
            client_id: client.client_id.clone(),
            client_name: client.name.clone(),
            recipients: groups.notify_addresses(),
            decided_by: None,
            comment: None,
        });
    }

    /// The notification of a decision for `client`'s contacts.
    pub(crate) fn decided(&self, client: &ClientRecord, last: &ApprovalDecision) {
        let kind = match client.status {
            ClientStatus::Approved => NotificationKind::Approved,
            ClientStatus::Rejected => NotificationKind::Rejected,
            _ => return,
        };
        self.send(Notification {
            kind,
            client_id: client.client_id.clone(),
            client_name: client.name.clone(),
            recipients: client.contacts.clone(),
            decided_by: Some(last.approver.clone()),
            comment: last.comment.clone(),
        });
    }
}

/// Tries `notification` up to four times, logging each failure.
async fn deliver(notifier: &dyn Notifier, notification: &Notification) {
    for attempt in 0..=RETRY_DELAYS.len() {
        match notifier.notify(notification).await {
            Ok(()) => return,
            Err(error) => {
                let last = attempt == RETRY_DELAYS.len();
                tracing::warn!(
                    target: "tower_oauth2::server",
                    kind = notification.kind.as_str(),
                    client_id = %notification.client_id,
                    attempt = attempt + 1,
                    %error,
                    "{}",
                    if last {
                        "notification failed; giving up (the decision stands)"
                    } else {
                        "notification failed; trying again"
                    }
                );
                if let Some(delay) = RETRY_DELAYS.get(attempt) {
                    tokio::time::sleep(*delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(approver: &str, decision: Decision, groups: &[&str]) -> ApprovalDecision {
        ApprovalDecision {
            client_id: "c".into(),
            approver: approver.into(),
            decision,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            comment: None,
            decided_at: 1,
        }
    }

    #[test]
    fn rules_combine() -> Result<(), ConfigError> {
        let groups = ApproverGroups::new([
            ApproverGroup::new("security", ApprovalRule::All).members(["alice", "bob"]),
            ApproverGroup::new("owners", ApprovalRule::Any),
        ])?;
        use Decision::*;
        assert_eq!(groups.settle(&[]), None);
        let alice = decision("alice", Approve, &["security"]);
        let bob = decision("bob", Approve, &["security"]);
        let owner = decision("olga", Approve, &["owners"]);
        assert_eq!(
            groups.settle(&[alice.clone(), bob.clone()]),
            None,
            "owners not yet"
        );
        assert_eq!(
            groups.settle(&[alice.clone(), owner.clone()]),
            None,
            "bob not yet"
        );
        assert_eq!(
            groups.settle(&[owner.clone(), bob.clone(), alice.clone()]),
            Some(ClientStatus::Approved),
            "in any order"
        );
        let no = decision("olga", Reject, &["owners"]);
        assert_eq!(groups.settle(&[alice, no]), Some(ClientStatus::Rejected));
        Ok(())
    }

    #[test]
    fn membership_comes_from_lists_directories_and_claims() -> Result<(), ConfigError> {
        let groups = ApproverGroups::new([
            ApproverGroup::new("security", ApprovalRule::All).members(["alice"]),
            ApproverGroup::new("owners", ApprovalRule::Any),
        ])?
        .membership_claim("groups");
        assert_eq!(groups.groups_of("alice", None, &[]), ["security"]);
        assert_eq!(
            groups.groups_of("olga", None, &["owners".into()]),
            ["owners"]
        );
        let claims = serde_json::json!({"groups": ["owners", "other"]});
        assert_eq!(groups.groups_of("olga", Some(&claims), &[]), ["owners"]);
        let claims = serde_json::json!({"groups": "owners"});
        assert_eq!(groups.groups_of("olga", Some(&claims), &[]), ["owners"]);
        assert!(
            groups
                .groups_of("mallory", Some(&serde_json::json!({})), &[])
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn bad_groups_are_configuration_errors() {
        assert!(ApproverGroups::new([]).is_err());
        assert!(ApproverGroups::new([ApproverGroup::new("a", ApprovalRule::All)]).is_err());
        assert!(
            ApproverGroups::new([
                ApproverGroup::new("a", ApprovalRule::Any),
                ApproverGroup::new("a", ApprovalRule::Any),
            ])
            .is_err()
        );
        assert!(
            ApproverGroups::new([ApproverGroup::new("a", ApprovalRule::Any).notify(["nope"])])
                .is_err()
        );
    }

    #[test]
    fn email_addresses() {
        assert!(check_email("ops@example.com").is_ok());
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a b@c",
            "a@b@c",
            "a@.b",
            "x@y\r\nBcc: z@w",
            "<a@b>",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }
}
