//! What a rule's check reads and returns: the event with its JSON fields parsed once
//! ([`View`]), and what a check found ([`Hit`]).

use std::net::IpAddr;

use serde_json::Value;

use super::fields::{get_ci, scalar};
use super::Severity;
use crate::normalize::NormalizedEvent;

/// An event with its JSON fields parsed once.
pub(crate) struct View<'a> {
    pub(crate) e: &'a NormalizedEvent,
    pub(crate) req: Value,
    pub(crate) resp: Value,
}

impl<'a> View<'a> {
    pub(crate) fn new(e: &'a NormalizedEvent) -> View<'a> {
        View {
            e,
            req: parse(&e.request_parameters),
            resp: parse(&e.response_elements),
        }
    }

    /// The event is one of `names` from `source`.
    pub(crate) fn is(&self, source: &str, names: &[&str]) -> bool {
        self.e.event_source == source && names.contains(&self.e.event_name.as_str())
    }

    /// The event is one of `names` from `source` and succeeded.
    pub(crate) fn succeeded(&self, source: &str, names: &[&str]) -> bool {
        self.is(source, names) && !self.failed()
    }

    /// The call carries a non-blank `errorCode`.
    pub(crate) fn failed(&self) -> bool {
        self.e
            .error_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    }

    /// `userIdentity.type` is `Root`.
    pub(crate) fn is_root(&self) -> bool {
        self.e
            .user_identity_type
            .as_deref()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("Root"))
    }

    /// The event's account: the recipient account, else the caller's.
    pub(crate) fn account(&self) -> Option<&str> {
        self.e.account()
    }

    /// Who made the call, for summaries.
    pub(crate) fn actor(&self) -> &str {
        &self.e.user_name
    }

    /// Where the call came from, for a summary: `from IP: 192.0.2.1` for an address, `via
    /// cloudformation.amazonaws.com` when `sourceIPAddress` names an AWS service (or says `AWS
    /// Internal`), `from an unknown source` when it is absent (docs/alerts.md, "Source IP or
    /// service").
    pub(crate) fn origin(&self) -> String {
        match self.source() {
            Some(s) if is_ip_address(s) => format!("from IP: {s}"),
            Some(s) => format!("via {s}"),
            None => "from an unknown source".to_string(),
        }
    }

    /// `sourceIPAddress` as a context entry: `Source IP` for an address, `Source` for a service.
    pub(crate) fn source_entry(&self) -> Option<(&'static str, String)> {
        self.source().map(|s| (source_label(s), s.to_string()))
    }

    fn source(&self) -> Option<&str> {
        self.e
            .source_ip
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// An `additionalEventData` field as text (parsed on demand: few rules read it).
    pub(crate) fn extra_str(&self, key: &str) -> Option<String> {
        get_ci(&parse(&self.e.additional_event_data), key).and_then(scalar)
    }

    /// A request parameter as text.
    pub(crate) fn req_str(&self, key: &str) -> Option<String> {
        get_ci(&self.req, key).and_then(scalar)
    }

    /// A request parameter as JSON.
    pub(crate) fn req_value(&self, key: &str) -> Option<&Value> {
        get_ci(&self.req, key)
    }

    /// A request parameter, by path, as text (`["member", "memberId"]`).
    pub(crate) fn req_path(&self, path: &[&str]) -> Option<String> {
        let mut v = &self.req;
        for key in path {
            v = get_ci(v, key)?;
        }
        scalar(v)
    }

    /// A response element, by path, as text.
    pub(crate) fn resp_path(&self, path: &[&str]) -> Option<String> {
        let mut v = &self.resp;
        for key in path {
            v = get_ci(v, key)?;
        }
        scalar(v)
    }

    /// The first of `fields` the event carries.
    pub(crate) fn first(&self, fields: &[Field]) -> Option<String> {
        fields.iter().find_map(|f| self.field(*f))
    }

    /// One field of the request or the response, as text: a scalar, or a list of scalars
    /// joined with `, ` (`None` for an empty list and for objects).
    pub(crate) fn field(&self, field: Field) -> Option<String> {
        let value = match field {
            Field::Req(key) => get_ci(&self.req, key)?,
            Field::Resp(path) => {
                let mut v = &self.resp;
                for key in path {
                    v = get_ci(v, key)?;
                }
                v
            }
        };
        match value {
            Value::Array(items) => {
                let texts: Vec<String> = items.iter().filter_map(scalar).collect();
                (!texts.is_empty()).then(|| texts.join(", "))
            }
            v => scalar(v),
        }
    }
}

/// `sourceIPAddress` holds an IPv4 or IPv6 address, not a service name: for a call an AWS
/// service made on the caller's behalf it holds the service (`sso.amazonaws.com`) or `AWS
/// Internal`.
pub fn is_ip_address(source: &str) -> bool {
    source.trim().parse::<IpAddr>().is_ok()
}

/// The label of a `sourceIPAddress` value: `Source IP` for an address, `Source` for anything
/// else (a service principal is not an IP).
pub fn source_label(source: &str) -> &'static str {
    if is_ip_address(source) {
        "Source IP"
    } else {
        "Source"
    }
}

fn parse(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A field of an event that a rule names as data. A list of strings (IAM's `clientIDList`,
/// `thumbprintList`) reads as its items joined with `, `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `requestParameters.<key>` (key compared ignoring ASCII case when not found exactly).
    Req(&'static str),
    /// `responseElements.<path...>`.
    Resp(&'static [&'static str]),
}

/// What a check found: the specialised title (if any), the summary and the context.
pub(crate) struct Hit {
    pub(crate) title: Option<String>,
    /// A severity instead of the rule's (e.g. raised by what the call did).
    pub(crate) severity: Option<Severity>,
    pub(crate) summary: String,
    pub(crate) context: Vec<(String, String)>,
}

impl Hit {
    pub(crate) fn new(summary: String) -> Hit {
        Hit {
            title: None,
            severity: None,
            summary,
            context: Vec::new(),
        }
    }

    /// A specialised title (instead of the rule's).
    pub(crate) fn title(mut self, title: impl Into<String>) -> Hit {
        self.title = Some(title.into());
        self
    }

    /// A severity instead of the rule's.
    pub(crate) fn severity(mut self, severity: Severity) -> Hit {
        self.severity = Some(severity);
        self
    }

    /// Adds `label: value` when there is a non-blank value.
    pub(crate) fn with(mut self, label: &str, value: Option<impl Into<String>>) -> Hit {
        if let Some(v) = value.map(Into::into).filter(|v| !v.trim().is_empty()) {
            self.context.push((label.to_string(), v));
        }
        self
    }
}
