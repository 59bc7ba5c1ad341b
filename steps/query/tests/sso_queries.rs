//! `sso_admin_users` and `sso_activity_summary` over IAM Identity Center's three CloudTrail
//! services (stored with `event_type` `sso`): `sso.amazonaws.com` (permission sets,
//! assignments), `sso-directory.amazonaws.com` (the console's users, groups, memberships) and
//! `identitystore.amazonaws.com` (the Identity Store API). Exact rows on the local engine
//! (DataFusion), for both export layouts; the same SQL is the Athena saved query.

mod common;

use chrono::{Duration, DurationRound, Utc};
use common::{repo_root, temp_dir, write_tree, Event};
use iamtrail_query::{catalog, Bindings, LocalEngine, QueryResult};

const SSO: &str = "sso.amazonaws.com";
const DIRECTORY: &str = "sso-directory.amazonaws.com";
const IDENTITY_STORE: &str = "identitystore.amazonaws.com";

fn sso_event(
    id: &'static str,
    minute: i64,
    source: &'static str,
    name: &'static str,
    user: &'static str,
) -> Event {
    let yesterday = Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::days(1);
    Event {
        id,
        time: yesterday + Duration::hours(9) + Duration::minutes(minute),
        name,
        source,
        event_type: "sso",
        user,
        identity_type: "AssumedRole",
        region: "us-east-1",
        source_ip: "198.51.100.7",
        error_code: None,
        error_message: None,
        request_parameters: None,
        response_elements: None,
        additional_event_data: None,
        session_issuer: None,
        mfa_used: None,
        read_only: false,
    }
}

/// carol works in the console (sso and sso-directory), dave through the Identity Store API;
/// erin only reads, frank only uses the access portal, and an IAM CreateUser is not Identity
/// Center's.
fn events() -> Vec<Event> {
    vec![
        sso_event("ps", 0, SSO, "CreatePermissionSet", "carol"),
        sso_event("assign", 1, SSO, "CreateAccountAssignment", "carol"),
        sso_event("group", 2, DIRECTORY, "CreateGroup", "carol"),
        sso_event("member-1", 3, DIRECTORY, "AddMemberToGroup", "carol"),
        Event {
            source_ip: "203.0.113.9",
            ..sso_event("member-2", 4, DIRECTORY, "AddMemberToGroup", "carol")
        },
        sso_event("user", 5, IDENTITY_STORE, "CreateUser", "dave"),
        sso_event(
            "membership-1",
            6,
            IDENTITY_STORE,
            "CreateGroupMembership",
            "dave",
        ),
        Event {
            error_code: Some("AccessDeniedException"),
            ..sso_event(
                "membership-2",
                7,
                IDENTITY_STORE,
                "CreateGroupMembership",
                "dave",
            )
        },
        Event {
            read_only: true,
            ..sso_event("read", 8, DIRECTORY, "ListGroups", "erin")
        },
        sso_event("portal", 9, SSO, "GetRoleCredentials", "frank"),
        Event {
            source: "iam.amazonaws.com",
            event_type: "iam",
            ..sso_event("iam-user", 10, "iam.amazonaws.com", "CreateUser", "alice")
        },
    ]
}

async fn run(engine: &LocalEngine, name: &str) -> QueryResult {
    let queries = catalog::load_dir(repo_root().join("queries")).unwrap();
    let q = catalog::find(&queries, name).unwrap();
    let bindings = Bindings::from_args(q, None, &[], Utc::now()).unwrap();
    engine.run(q, &bindings).await.unwrap()
}

/// The rows without the `last_seen` timestamp.
fn cells(result: &QueryResult, skip: &str) -> Vec<Vec<String>> {
    let skip = result.columns.iter().position(|c| c == skip).unwrap();
    result
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, c)| c.clone().unwrap_or_default())
                .collect()
        })
        .collect()
}

fn row(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[tokio::test]
async fn sso_admin_users_counts_identity_store_users_groups_and_memberships() {
    for by_region in [false, true] {
        let tree = temp_dir("sso-admin-users");
        write_tree(tree.path(), &events(), by_region);
        let engine = LocalEngine::new(tree.path()).await.unwrap();
        let result = run(&engine, "sso_admin_users").await;
        assert_eq!(
            result.columns,
            [
                "user_name",
                "admin_actions",
                "permission_set_changes",
                "assignment_changes",
                "directory_changes",
                "application_changes",
                "source_ips",
                "last_seen"
            ]
        );
        // carol: a permission set, an assignment, a group and two memberships (sso-directory)
        // from two addresses; dave: a user and two memberships (identitystore), one denied. The
        // reader, the portal user and the IAM call are not Identity Center administration.
        assert_eq!(
            cells(&result, "last_seen"),
            [
                row(&["carol", "5", "1", "1", "3", "0", "2"]),
                row(&["dave", "3", "0", "0", "3", "0", "1"]),
            ],
            "partitioned by region: {by_region}"
        );
        let last = result.column("last_seen");
        assert!(last[0].unwrap() < last[1].unwrap(), "{last:?}");
    }
}

#[tokio::test]
async fn sso_activity_summary_shows_the_three_services_apart() {
    for by_region in [false, true] {
        let tree = temp_dir("sso-activity");
        write_tree(tree.path(), &events(), by_region);
        let engine = LocalEngine::new(tree.path()).await.unwrap();
        let result = run(&engine, "sso_activity_summary").await;
        assert_eq!(
            result.columns,
            [
                "event_source",
                "event_name",
                "events",
                "users",
                "source_ips",
                "changes",
                "errors",
                "last_seen"
            ]
        );
        assert_eq!(
            cells(&result, "last_seen"),
            [
                row(&[
                    IDENTITY_STORE,
                    "CreateGroupMembership",
                    "2",
                    "1",
                    "1",
                    "2",
                    "1"
                ]),
                row(&[DIRECTORY, "AddMemberToGroup", "2", "1", "2", "2", "0"]),
                row(&[IDENTITY_STORE, "CreateUser", "1", "1", "1", "1", "0"]),
                row(&[DIRECTORY, "CreateGroup", "1", "1", "1", "1", "0"]),
                row(&[DIRECTORY, "ListGroups", "1", "1", "1", "0", "0"]),
                row(&[SSO, "CreateAccountAssignment", "1", "1", "1", "1", "0"]),
                row(&[SSO, "CreatePermissionSet", "1", "1", "1", "1", "0"]),
                row(&[SSO, "GetRoleCredentials", "1", "1", "1", "1", "0"]),
            ],
            "partitioned by region: {by_region}"
        );
    }
}
