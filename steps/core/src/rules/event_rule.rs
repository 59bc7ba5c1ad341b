//! Rules that are only a list of calls: "this call of this service succeeded", written as data.
//! The summary reads `<noun> <subject> <verb><place> by <actor>`, e.g. "IAM user mallory was
//! created by Admin".

use super::fields::or_unknown;
use super::view::{Field, Hit, View};

/// A rule that fires when one of its calls succeeds.
#[derive(Debug)]
pub struct EventRule {
    /// The `eventSource` the calls belong to.
    pub source: &'static str,
    /// The calls, each with its verb and, when it has one, its own title.
    pub events: &'static [EventCase],
    /// What the call acts on, e.g. "IAM user".
    pub noun: &'static str,
    /// The fields naming it: the first the event carries is used.
    pub subject: &'static [Field],
    /// Appended to the verb, e.g. " in IAM Identity Center".
    pub place: &'static str,
    /// The alert's details: a label and the fields to read it from (first present).
    pub context: &'static [(&'static str, &'static [Field])],
}

/// One call of an [`EventRule`].
#[derive(Debug)]
pub struct EventCase {
    pub name: &'static str,
    /// E.g. "was created".
    pub verb: &'static str,
    /// A title for this call instead of the rule's.
    pub title: Option<&'static str>,
}

impl EventCase {
    /// A call titled like its rule.
    pub const fn new(name: &'static str, verb: &'static str) -> EventCase {
        EventCase {
            name,
            verb,
            title: None,
        }
    }

    /// A call with its own title.
    pub const fn titled(name: &'static str, verb: &'static str, title: &'static str) -> EventCase {
        EventCase {
            name,
            verb,
            title: Some(title),
        }
    }
}

impl EventRule {
    /// The event names this rule watches.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.events.iter().map(|c| c.name)
    }

    pub(crate) fn check(&self, v: &View) -> Option<Hit> {
        if v.e.event_source != self.source || v.failed() {
            return None;
        }
        let case = self.events.iter().find(|c| c.name == v.e.event_name)?;
        let subject = v.first(self.subject);
        let mut hit = Hit::new(format!(
            "{} {} {}{} by {}",
            self.noun,
            or_unknown(&subject),
            case.verb,
            self.place,
            v.actor()
        ));
        if let Some(title) = case.title {
            hit = hit.title(title);
        }
        for (label, fields) in self.context {
            hit = hit.with(label, v.first(fields));
        }
        Some(hit)
    }
}
