//! The authorization matrix, generated from the schema: every root query, mutation and
//! subscription field, called by an anonymous client and by each role, against the rules of
//! `docs/rules.md`. A field missing from the table fails the test, so a new field is decided
//! on, not left open. The matrix it checked is the table of `docs/roles.md`: the test fails
//! when that table says otherwise (`ATES_UPDATE_DOCS=1` rewrites it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::on_both_backends;
use crate::ws::Said;

on_both_backends!(every_root_field_allows_exactly_the_roles_it_should);

const ROLES: [&str; 5] = ["anonymous", "worker", "manager", "accountant", "admin"];
const EVERY_POPUG: &[&str] = &["worker", "manager", "accountant", "admin"];

/// Who may call each root field (`docs/rules.md`, "Who sees what"). A popug
/// asking about itself is always allowed; these calls use no popug ids, so what is checked is
/// the role's own right to the field.
fn allowed(field: &str) -> &'static [&'static str] {
    match field {
        "me" | "today" | "node" | "nodes" | "task" | "tasks" | "myTasks" | "account"
        | "auditLog" | "payouts" | "statement" => EVERY_POPUG,
        "popugs" => &["manager", "accountant", "admin"],
        "dailySummaries" => &["accountant", "admin"],
        "analytics" | "mailbox" | "retryPayout" | "ledgerCheck" | "deadLetters"
        | "replayDeadLetter" => &["admin"],
        "createTask" | "completeTask" => EVERY_POPUG,
        "shuffleTasks" => &["manager", "admin"],
        "closeDay" => &["accountant", "admin"],
        other => panic!("{other} is not in the authorization matrix: decide who may call it"),
    }
}

/// Literal arguments for the required parameters of a field.
fn arguments(field: &str, required: &[(String, String)]) -> String {
    let literal = |name: &str, ty: &str| -> String {
        match (field, name, ty) {
            ("createTask", "input", _) => "{ title: \"matrix\" }".into(),
            (_, _, "ID" | "String") => "\"matrix-id\"".into(),
            (_, _, "Date") => "\"2026-03-01\"".into(),
            (_, _, "Int") => "1".into(),
            (_, _, "Boolean") => "true".into(),
            _ => panic!("{field}({name}: {ty}!) needs a literal in the matrix test"),
        }
    };
    if required.is_empty() {
        return String::new();
    }
    let list: Vec<String> = required
        .iter()
        .map(|(name, ty)| format!("{name}: {}", literal(name, ty)))
        .collect();
    format!("({})", list.join(", "))
}

const FIELDS: &str = "fields { name description args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } \
                      type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

/// The named type under any NON_NULL and LIST wrappers, and its kind.
fn named(ty: &Value) -> (String, String) {
    let mut ty = ty;
    while ty["name"].is_null() {
        assert!(
            ty.is_object(),
            "ask for deeper `ofType`s: the type's name is out of reach"
        );
        ty = &ty["ofType"];
    }
    (
        ty["kind"].as_str().unwrap_or_default().to_owned(),
        ty["name"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn every_root_field_allows_exactly_the_roles_it_should(app: TestApp) {
    let mut users = BTreeMap::new();
    for role in EVERY_POPUG {
        users.insert(*role, app.user(role, &format!("matrix-{role}")).await);
    }
    let schema = app
        .ok(
            &users["admin"],
            &format!("{{ __schema {{ queryType {{ {FIELDS} }} mutationType {{ {FIELDS} }} }} }}"),
            json!({}),
        )
        .await;
    let mut unexpected = Vec::new();
    let mut checked = BTreeSet::new();
    let mut matrix = Vec::new();
    for (operation, root) in [("query", "queryType"), ("mutation", "mutationType")] {
        let fields = schema["__schema"][root]["fields"]
            .as_array()
            .expect("root fields");
        for field in fields {
            let name = field["name"].as_str().expect("a name");
            let required: Vec<(String, String)> = field["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter(|arg| arg["type"]["kind"] == "NON_NULL")
                .map(|arg| {
                    (
                        arg["name"].as_str().unwrap_or_default().to_owned(),
                        named(&arg["type"]).1,
                    )
                })
                .collect();
            let (kind, _) = named(&field["type"]);
            let selection = if kind == "OBJECT" || kind == "INTERFACE" {
                " { __typename }"
            } else {
                ""
            };
            let document = format!(
                "{operation} {{ {name}{}{selection} }}",
                arguments(name, &required)
            );
            let may = allowed(name);
            for role in ROLES {
                let token = users.get(role).map(|u| u.token.as_str());
                let body = app.gql(token, &document, json!({})).await;
                let codes: Vec<&str> = body["errors"]
                    .as_array()
                    .map(|errors| {
                        errors
                            .iter()
                            .filter_map(|e| e["extensions"]["code"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let denied = codes
                    .iter()
                    .any(|c| *c == "UNAUTHENTICATED" || *c == "FORBIDDEN");
                let expected_allowed = may.contains(&role);
                if denied == expected_allowed {
                    unexpected.push(format!(
                        "{role} {} {name}: {body}",
                        if denied { "was refused" } else { "was allowed" }
                    ));
                }
                if role == "anonymous" {
                    assert!(
                        codes.contains(&"UNAUTHENTICATED"),
                        "anonymous {name} must be UNAUTHENTICATED: {body}"
                    );
                }
            }
            checked.insert(name.to_owned());
            matrix.push(Row {
                operation,
                field: name.to_owned(),
                description: field["description"].as_str().map(str::to_owned),
                allowed: may,
            });
        }
    }

    // Subscriptions, over WebSocket, each naming another popug (the admin): a popug hears
    // only of its own tasks unless it is an admin or a manager.
    let subscriptions = app
        .ok(
            &users["admin"],
            "{ __schema { subscriptionType { fields { name description } } } }",
            json!({}),
        )
        .await;
    let other = users["admin"].id.clone();
    for field in subscriptions["__schema"]["subscriptionType"]["fields"]
        .as_array()
        .expect("subscription fields")
    {
        let name = field["name"].as_str().expect("a name");
        let may: &[&str] = match name {
            "taskAssigned" | "taskCompleted" => &["manager", "admin"],
            other => panic!("{other} is not in the authorization matrix: decide who may call it"),
        };
        for role in ROLES {
            let mut ws = app.ws("graphql-transport-ws").await;
            let denied = match users.get(role) {
                None => {
                    ws.send(json!({ "type": "connection_init" })).await;
                    ws.close_code(Duration::from_secs(5)).await == Some(4403)
                }
                Some(user) => {
                    ws.init(&user.token).await;
                    ws.subscribe(
                        "1",
                        &format!(
                            "subscription($who: ID) {{ {name}(assigneeId: $who) {{ __typename }} }}"
                        ),
                        json!({ "who": other }),
                    )
                    .await;
                    match ws.said(Duration::from_millis(500)).await {
                        Said::Message(message) => {
                            message["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
                        }
                        Said::Silent => false,
                        Said::Closed(code) => panic!("{role} {name}: closed with {code:?}"),
                    }
                }
            };
            if denied == may.contains(&role) {
                unexpected.push(format!(
                    "{role} {} subscription {name}",
                    if denied { "was refused" } else { "was allowed" }
                ));
            }
        }
        checked.insert(name.to_owned());
        matrix.push(Row {
            operation: "subscription",
            field: name.to_owned(),
            description: field["description"].as_str().map(str::to_owned),
            allowed: EVERY_POPUG,
        });
    }

    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert_roles_doc_shows(&matrix);
    // The matrix saw every field the contract names.
    for field in [
        "me",
        "createTask",
        "shuffleTasks",
        "closeDay",
        "analytics",
        "taskAssigned",
    ] {
        assert!(checked.contains(field), "{field} was not checked");
    }
}

/// One root field of the matrix, as checked.
struct Row {
    operation: &'static str,
    field: String,
    description: Option<String>,
    allowed: &'static [&'static str],
}

const MATRIX_START: &str = "<!-- the matrix: generated by tests/api/authorization.rs -->\n";
const MATRIX_END: &str = "<!-- end of the matrix -->";

/// The table of `docs/roles.md` is the matrix this test checked.
fn assert_roles_doc_shows(matrix: &[Row]) {
    let mut table = String::from(
        "| operation | field | worker | manager | accountant | admin | what it is |\n\
         | --- | --- | :-: | :-: | :-: | :-: | --- |\n",
    );
    for row in matrix {
        let marks: Vec<&str> = EVERY_POPUG
            .iter()
            .map(|role| {
                if row.allowed.contains(role) {
                    "yes"
                } else {
                    ""
                }
            })
            .collect();
        let what = row
            .description
            .as_deref()
            .and_then(|d| d.split("\n\n").next())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        table += &format!(
            "| {} | `{}` | {} | {what} |\n",
            row.operation,
            row.field,
            marks.join(" | ")
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/roles.md");
    let doc = std::fs::read_to_string(&path).expect("docs/roles.md");
    let (before, rest) = doc
        .split_once(MATRIX_START)
        .expect("the matrix's start marker");
    let (shown, after) = rest
        .split_once(MATRIX_END)
        .expect("the matrix's end marker");
    if shown == table {
        return;
    }
    if std::env::var_os("ATES_UPDATE_DOCS").is_some() {
        std::fs::write(
            &path,
            format!("{before}{MATRIX_START}{table}{MATRIX_END}{after}"),
        )
        .expect("write docs/roles.md");
        return;
    }
    panic!(
        "docs/roles.md does not show the matrix this test checked; rewrite it with \
         `ATES_UPDATE_DOCS=1 cargo test -p gateway --test api authorization`:\n{table}"
    );
}
