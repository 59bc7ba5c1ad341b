//! What the tracker has seen before: the stored events a rule reads to decide about a new one
//! (docs/alerts.md, "Rules that read history").
//!
//! A rule that needs the past names the calls that trigger it and the calls it reads
//! ([`Reads`]). Before evaluating a batch, the caller asks [`needs`] which calls to read, loads
//! them (Collect: a Query of the events table's `event_name-event_time-index`; `iamtrail rules
//! test`: the log directory itself), and adds the batch's own events, so that an event and the
//! one it depends on may arrive together. The rules themselves stay pure: the same history
//! gives the same answer.

use std::collections::{BTreeSet, HashMap};

use crate::normalize::NormalizedEvent;

/// The calls that trigger a history rule and the calls it reads.
#[derive(Debug)]
pub struct Reads {
    /// `eventName`s the rule decides on.
    pub triggers: &'static [&'static str],
    /// `eventName`s of the stored events it reads.
    pub reads: &'static [&'static str],
}

/// Stored events by name, each list in time order (oldest first) without duplicate ids.
#[derive(Debug, Default, Clone)]
pub struct History {
    by_name: HashMap<String, Vec<NormalizedEvent>>,
}

impl History {
    /// An empty history: history rules decide from the event alone.
    pub fn new() -> History {
        History::default()
    }

    /// A history of these events.
    pub fn of<'e>(events: impl IntoIterator<Item = &'e NormalizedEvent>) -> History {
        let mut history = History::new();
        history.extend(events);
        history
    }

    /// Adds events (an event id already held under its name is skipped).
    pub fn extend<'e>(&mut self, events: impl IntoIterator<Item = &'e NormalizedEvent>) {
        let mut touched = BTreeSet::new();
        for e in events {
            let list = self.by_name.entry(e.event_name.clone()).or_default();
            if !list.iter().any(|held| held.event_id == e.event_id) {
                list.push(e.clone());
                touched.insert(e.event_name.clone());
            }
        }
        for name in touched {
            if let Some(list) = self.by_name.get_mut(&name) {
                list.sort_by(|a, b| {
                    (a.event_time.as_str(), a.event_id.as_str())
                        .cmp(&(b.event_time.as_str(), b.event_id.as_str()))
                });
            }
        }
    }

    /// The events of one name, oldest first.
    pub fn named(&self, name: &str) -> &[NormalizedEvent] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The events of these names that happened no later than `event` (and are not it),
    /// newest first: what was true when `event` happened.
    pub fn before<'h>(
        &'h self,
        names: &'h [&'h str],
        event: &'h NormalizedEvent,
    ) -> impl Iterator<Item = &'h NormalizedEvent> + 'h {
        let mut found: Vec<&NormalizedEvent> = names
            .iter()
            .flat_map(|n| self.named(n))
            .filter(|e| e.event_time <= event.event_time && e.event_id != event.event_id)
            .collect();
        found.sort_by(|a, b| {
            (b.event_time.as_str(), b.event_id.as_str())
                .cmp(&(a.event_time.as_str(), a.event_id.as_str()))
        });
        found.into_iter()
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `eventName`s whose stored events the rules read to decide about these events (empty
/// when no event triggers a history rule, which is nearly always).
pub fn needs<'e>(events: impl IntoIterator<Item = &'e NormalizedEvent>) -> BTreeSet<&'static str> {
    let mut names = BTreeSet::new();
    for e in events {
        for reads in super::history_reads() {
            if reads.triggers.contains(&e.event_name.as_str()) {
                names.extend(reads.reads.iter().copied());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, name: &str, time: &str) -> NormalizedEvent {
        NormalizedEvent {
            event_id: id.into(),
            event_name: name.into(),
            event_time: time.into(),
            ..NormalizedEvent::default()
        }
    }

    #[test]
    fn before_is_newest_first_and_excludes_the_event_and_later_ones() {
        let a = event("a", "AttachGroupPolicy", "2024-01-01T10:00:00Z");
        let b = event("b", "DetachGroupPolicy", "2024-01-01T11:00:00Z");
        let c = event("c", "AttachGroupPolicy", "2024-01-01T13:00:00Z");
        let now = event("n", "AddUserToGroup", "2024-01-01T12:00:00Z");
        let mut h = History::of([&c, &a]);
        h.extend([&b, &a]);
        assert_eq!(h.len(), 3, "a is held once");
        let names = ["AttachGroupPolicy", "DetachGroupPolicy"];
        let ids: Vec<&str> = h
            .before(&names, &now)
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(h.named("AttachGroupPolicy")[0].event_id, "a");
        assert!(History::new().is_empty());
    }
}
