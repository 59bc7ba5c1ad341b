//! `identity-provider-change`: a SAML or OpenID Connect identity provider created, changed or
//! deleted in IAM, written as data (docs/alerts.md, "The rules").

use super::event_rule::{EventCase, EventRule};
use super::view::Field;
use super::{Logic, Rule, RuleInfo, Severity, IAM_SOURCE};

pub(super) const IDENTITY_PROVIDER_CHANGE: Rule = Rule {
    info: RuleInfo {
        id: "identity-provider-change",
        title: "Identity Provider Changed",
        severity: Severity::Critical,
        description: "iam:CreateSAMLProvider, UpdateSAMLProvider, DeleteSAMLProvider, \
            CreateOpenIDConnectProvider, UpdateOpenIDConnectProviderThumbprint, \
            AddClientIDToOpenIDConnectProvider or DeleteOpenIDConnectProvider succeeded \
            (eventSource iam.amazonaws.com). A new or changed federation trust lets whoever \
            controls the identity provider sign in to any role that trusts it: a persistence \
            path as strong as a backdoor role (T1484.002, trust modification). The alert shows \
            the provider's name, ARN or URL, its client ids and thumbprints. Failed calls do not \
            alert.",
        attack: &["T1484.002"],
        seed_check: None,
    },
    logic: Logic::Events(&EventRule {
        source: IAM_SOURCE,
        events: &[
            EventCase::titled(
                "CreateSAMLProvider",
                "was created",
                "SAML Identity Provider Created",
            ),
            EventCase::titled(
                "UpdateSAMLProvider",
                "was updated",
                "SAML Identity Provider Updated",
            ),
            EventCase::titled(
                "DeleteSAMLProvider",
                "was deleted",
                "SAML Identity Provider Deleted",
            ),
            EventCase::titled(
                "CreateOpenIDConnectProvider",
                "was created",
                "OIDC Identity Provider Created",
            ),
            EventCase::titled(
                "UpdateOpenIDConnectProviderThumbprint",
                "had its thumbprints replaced",
                "OIDC Identity Provider Thumbprints Replaced",
            ),
            EventCase::titled(
                "AddClientIDToOpenIDConnectProvider",
                "was given another client ID",
                "OIDC Identity Provider Client ID Added",
            ),
            EventCase::titled(
                "DeleteOpenIDConnectProvider",
                "was deleted",
                "OIDC Identity Provider Deleted",
            ),
        ],
        noun: "Identity provider",
        subject: &[
            Field::Req("name"),
            Field::Req("url"),
            Field::Req("sAMLProviderArn"),
            Field::Req("openIDConnectProviderArn"),
            Field::Resp(&["sAMLProviderArn"]),
            Field::Resp(&["openIDConnectProviderArn"]),
        ],
        place: " in IAM",
        context: &[
            ("Provider Name", &[Field::Req("name")]),
            (
                "Provider ARN",
                &[
                    Field::Req("sAMLProviderArn"),
                    Field::Req("openIDConnectProviderArn"),
                    Field::Resp(&["sAMLProviderArn"]),
                    Field::Resp(&["openIDConnectProviderArn"]),
                ],
            ),
            ("Provider URL", &[Field::Req("url")]),
            (
                "Client IDs",
                &[Field::Req("clientIDList"), Field::Req("clientID")],
            ),
            ("Thumbprints", &[Field::Req("thumbprintList")]),
        ],
    }),
};
