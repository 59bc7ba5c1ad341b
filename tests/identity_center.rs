//! `admin-group-membership` end to end on the local stack: IAM Identity Center records in the
//! shapes CloudTrail writes (sso, sso-directory and identitystore), collected by real state
//! machine executions on moto, the rule reading its history from the events table
//! (docs/alerts.md, "Rules that read history"), the alert delivered to SNS once.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as Span, Utc};
use iamtrail_e2e::*;
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const TARGET: &str = "444455556666";
const INSTANCE: &str = "arn:aws:sso:::instance/ssoins-7223a1b2c3d4e5f6";
const STORE: &str = "d-9067e2e0a1";
const PERMISSION_SET: &str =
    "arn:aws:sso:::permissionSet/ssoins-7223a1b2c3d4e5f6/ps-0a1b2c3d4e5f6a7b";
const GROUP: &str = "24a8e4f8-6001-7044-dd40-0123456789a1";
const USER: &str = "34b8f4a8-7001-7055-ee50-0123456789b2";

/// A record by an Identity Center administrator (a permission-set session of the account), in
/// CloudTrail's shape.
fn ic_record(
    id: &str,
    time: DateTime<Utc>,
    source: &str,
    name: &str,
    request: Value,
    response: Value,
) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLESSO000001:carol@example.com",
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/carol@example.com"),
            "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLESSO000001",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLESSO000001",
                    "arn": format!("arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AdministratorAccess_0123456789abcdef"),
                    "accountId": ACCOUNT,
                    "userName": "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
                },
                "webIdFederationData": {},
                "attributes": {"creationDate": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(), "mfaAuthenticated": "false"}
            }
        },
        "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "requestParameters": request,
        "responseElements": response,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
}

/// The admin group set up: a permission set "AdminAccess" with AdministratorAccess, an
/// Identity Store group "platform-admins" assigned it on account TARGET, and a user.
fn setup(at: DateTime<Utc>) -> Vec<Value> {
    let min = Span::minutes;
    vec![
        ic_record(
            "ic-e2e-create-permission-set",
            at,
            "sso.amazonaws.com",
            "CreatePermissionSet",
            json!({"instanceArn": INSTANCE, "name": "AdminAccess", "sessionDuration": "PT4H"}),
            json!({"permissionSet": {"name": "AdminAccess", "permissionSetArn": PERMISSION_SET,
                                     "sessionDuration": "PT4H"}}),
        ),
        ic_record(
            "ic-e2e-attach-admin",
            at + min(1),
            "sso.amazonaws.com",
            "AttachManagedPolicyToPermissionSet",
            json!({"instanceArn": INSTANCE, "permissionSetArn": PERMISSION_SET,
                   "managedPolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
            Value::Null,
        ),
        ic_record(
            "ic-e2e-create-group",
            at + min(2),
            "identitystore.amazonaws.com",
            "CreateGroup",
            json!({"identityStoreId": STORE, "displayName": "platform-admins"}),
            json!({"groupId": GROUP, "identityStoreId": STORE}),
        ),
        ic_record(
            "ic-e2e-assign-group",
            at + min(3),
            "sso.amazonaws.com",
            "CreateAccountAssignment",
            json!({"instanceArn": INSTANCE, "targetId": TARGET, "targetType": "AWS_ACCOUNT",
                   "permissionSetArn": PERMISSION_SET, "principalType": "GROUP", "principalId": GROUP}),
            json!({"accountAssignmentCreationStatus": {
                "status": "IN_PROGRESS", "requestId": "c7f2a4f3-6f44-4b2c-9d3f-2f9b1c1d5e01",
                "targetId": TARGET, "targetType": "AWS_ACCOUNT", "permissionSetArn": PERMISSION_SET,
                "principalType": "GROUP", "principalId": GROUP}}),
        ),
        ic_record(
            "ic-e2e-create-user",
            at + min(4),
            "identitystore.amazonaws.com",
            "CreateUser",
            json!({"identityStoreId": STORE, "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"}),
            json!({"identityStoreId": STORE, "userId": USER}),
        ),
    ]
}

fn rule_ids(received: &[iamtrail::local::ReceivedAlert]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in received {
        for (k, v) in &a.attributes {
            if k == "rule_id" {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_added_to_an_admin_identity_center_group_is_one_alert() {
    let stack = start(options("identity-center")).await;
    let input =
        json!({"regions": ["us-east-1"], "sources": ["sso", "sso-directory", "identitystore"]});

    // The group gets its admin permission set (and the user exists) some hours before.
    let report = stack
        .emulator
        .add_records(setup(Utc::now() - Span::hours(3)));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let (_, summary) = run_ok(&stack, "ic-setup", input.clone()).await;
    assert_eq!(summary.totals.stored, 5, "{summary:?}");
    let received = stack.received_alerts().await.unwrap();
    assert_eq!(
        rule_ids(&received),
        BTreeMap::from([
            ("sso-account-assignment".to_string(), 1),
            ("sso-admin-policy-attachment".to_string(), 1),
            ("sso-permission-set-creation".to_string(), 1),
        ]),
        "the setup's own alerts, and no membership alert"
    );

    // Then the user is added to the group in the console (sso-directory). Its time is inside
    // the next run's window (after the settle time, within the overlap).
    let report = stack.emulator.add_records(vec![ic_record(
        "ic-e2e-add-member",
        Utc::now() - Span::minutes(10),
        "sso-directory.amazonaws.com",
        "AddMemberToGroup",
        json!({"identityStoreId": STORE, "groupId": GROUP, "member": {"memberId": USER}}),
        Value::Null,
    )]);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let (run, summary) = run_ok(&stack, "ic-membership", input.clone()).await;
    assert_eq!(summary.totals.alerts_queued, 1, "{summary:?}");
    let received = stack.received_alerts().await.unwrap();
    assert_eq!(
        received.len(),
        1,
        "{:?}",
        received.iter().map(|a| &a.subject).collect::<Vec<_>>()
    );
    let alert = &received[0];
    println!("{}\n{}", alert.subject, alert.body);
    let attributes: BTreeMap<&str, &str> = alert
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        attributes,
        BTreeMap::from([
            ("event_name", "AddMemberToGroup"),
            ("rule_id", "admin-group-membership"),
            ("severity", "CRITICAL"),
        ])
    );
    assert_eq!(
        alert.subject,
        "[CRITICAL] IAM Alert: User Added to Admin Identity Center Group"
    );
    // The summary names the group (from the stored identitystore CreateGroup), the permission
    // set (from the stored CreatePermissionSet), its admin policy and the account; the member's
    // name was withheld by CloudTrail, so it is named by id.
    assert!(
        alert.body.contains(&format!(
            "User {USER} was added to Identity Center group platform-admins by \
             AWSReservedSSO_AdministratorAccess_0123456789abcdef; the group holds permission set \
             AdminAccess (AdministratorAccess) on account {TARGET}"
        )),
        "{}",
        alert.body
    );
    for line in [
        "- Group: platform-admins".to_string(),
        format!("- Group ID: {GROUP}"),
        format!("- Target Accounts: {TARGET}"),
        format!("- Permission Set ARNs: {PERMISSION_SET}"),
    ] {
        assert!(alert.body.contains(&line), "{line}\n{}", alert.body);
    }
    assert_eq!(run.output.as_ref().unwrap()["alerts"]["sent"], 1);

    // The next run reads the membership again (the overlap) and sends nothing new.
    let (again, summary) = run_ok(&stack, "ic-again", input).await;
    assert_eq!(summary.totals.alerts_queued, 0, "{summary:?}");
    assert_eq!(again.output.as_ref().unwrap()["alerts"]["sent"], 0);
    assert!(stack.received_alerts().await.unwrap().is_empty());
    let outbox = scan_all(&stack.dynamodb(), &stack.settings().alerts_table).await;
    let memberships: Vec<&Item> = outbox
        .iter()
        .filter(|i| attr(i, "alert_type") == Some("admin-group-membership"))
        .collect();
    assert_eq!(memberships.len(), 1);
    assert_eq!(attr(memberships[0], "event_id"), Some("ic-e2e-add-member"));
    assert_eq!(attr(memberships[0], "status"), Some("sent"));
    stack.stop().await;
}
