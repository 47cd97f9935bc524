//! The authorization matrix, generated from the schema: every root query, mutation and
//! subscription field, called by an anonymous client and by each role, against the rules of
//! `docs/rules.md`. A field missing from the table fails the test, so a new field is decided
//! on, not left open. The matrix it checked is the table of `docs/roles.md`: the test fails
//! when that table says otherwise (`ATES_UPDATE_DOCS=1` rewrites it).
//!
//! Then what each role sees of *another* popug: every object type of the schema is placed under
//! a rule, and every field of the types that show popugs to one another (tasks, their
//! assignees, histories and events) has a rule of its own. A new type or such a field without
//! one fails the test; each field is read by each role about a worker who is none of them, and
//! `docs/roles.md` shows what was seen.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, User};
use crate::on_both_backends;
use crate::ws::Said;

on_both_backends!(
    every_root_field_allows_exactly_the_roles_it_should,
    every_field_about_another_popug_shows_to_exactly_the_roles_it_should,
);

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
    assert_doc_section(MATRIX_START, MATRIX_END, &table);
}

/// The part of `docs/roles.md` between `start` and `end` is `table`; `ATES_UPDATE_DOCS=1`
/// rewrites it.
fn assert_doc_section(start: &str, end: &str, table: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/roles.md");
    let doc = std::fs::read_to_string(&path).expect("docs/roles.md");
    let (before, rest) = doc.split_once(start).expect("the section's start marker");
    let (shown, after) = rest.split_once(end).expect("the section's end marker");
    if shown == table {
        return;
    }
    if std::env::var_os("ATES_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{before}{start}{table}{end}{after}"))
            .expect("write docs/roles.md");
        return;
    }
    panic!(
        "docs/roles.md does not show what this test checked; rewrite it with \
         `ATES_UPDATE_DOCS=1 cargo test -p gateway --test api authorization`:\n{table}"
    );
}

/// How an object type reaches a popug who is not its subject.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Anyone may read these objects, and each field has a rule ([`rule`]).
    Fields,
    /// One popug's money, whole: shown to that popug and to bookkeepers only, through the root
    /// fields that take a popug.
    Owner,
    /// Read only through root fields for staff (the matrix above decides who).
    Staff,
    /// Lists, pages and roots: they show what their items show.
    Plumbing,
}

/// Every object type of the schema, placed: a new type fails here until it is decided on.
fn reach(ty: &str) -> Reach {
    match ty {
        "Popug" | "Task" | "TaskHistoryEntry" | "TaskAssignedEvent" | "TaskCompletedEvent" => {
            Reach::Fields
        }
        "Account" | "AuditLogEntry" | "Payout" | "Statement" => Reach::Owner,
        "Analytics" | "ExpensiveTask" | "PeriodTop" | "DaySummary" | "DayClose"
        | "DayCloseResult" | "LedgerCheck" | "InvariantCheck" | "Mail" | "DeadLetter"
        | "Replay" => Reach::Staff,
        "PageInfo" | "ShuffleResult" | "Query" | "Mutation" | "Subscription" => Reach::Plumbing,
        list if list.ends_with("Connection") || list.ends_with("Edge") => Reach::Plumbing,
        other => {
            panic!("{other} is not placed in the authorization matrix: decide who sees it of whom")
        }
    }
}

/// Who sees a field of an object about another popug.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rule {
    /// Everyone who may read the object.
    Everyone,
    /// E-mail, role and active flag: the popug and those who may list popugs.
    Details,
    /// Money: its popug (a task's assignee) and the bookkeepers.
    Money,
}

/// The rule of each field of the [`Reach::Fields`] types.
fn rule(ty: &str, field: &str) -> Rule {
    match (ty, field) {
        ("Popug", "id" | "name") => Rule::Everyone,
        ("Popug", "email" | "role" | "active") => Rule::Details,
        (
            "Task",
            "id" | "title" | "jiraId" | "description" | "status" | "assignee" | "createdBy"
            | "createdAt" | "completedAt" | "history",
        ) => Rule::Everyone,
        ("Task", "assignFee" | "reward") => Rule::Money,
        ("TaskHistoryEntry", "move" | "assignee" | "previousAssignee" | "cause" | "loggedAt") => {
            Rule::Everyone
        }
        ("TaskHistoryEntry", "fee" | "reward") => Rule::Money,
        (
            "TaskAssignedEvent" | "TaskCompletedEvent",
            "seq" | "occurredAt" | "task" | "taskId" | "assignee" | "previousAssignee",
        ) => Rule::Everyone,
        ("TaskAssignedEvent", "fee") | ("TaskCompletedEvent", "reward") => Rule::Money,
        (ty, field) => panic!(
            "{ty}.{field} has no rule in the authorization matrix: decide who sees it of \
             another popug"
        ),
    }
}

fn sees(rule: Rule, role: &str) -> bool {
    match rule {
        Rule::Everyone => true,
        Rule::Details => role != "worker",
        Rule::Money => matches!(role, "accountant" | "admin"),
    }
}

/// A selection of every field of `ty`: objects by their type name only.
fn every_field(types: &BTreeMap<String, Vec<(String, String)>>, ty: &str) -> String {
    types[ty]
        .iter()
        .map(|(field, kind)| {
            if kind == "OBJECT" || kind == "INTERFACE" {
                format!("{field} {{ __typename }}")
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a field was shown: present and not null, in any of `objects`.
fn shown(objects: &[&Value], field: &str) -> bool {
    objects.iter().any(|object| !object[field].is_null())
}

async fn every_field_about_another_popug_shows_to_exactly_the_roles_it_should(app: TestApp) {
    // Wendy is the only popug a task can land on while she creates two, and completes one;
    // managers and admins are never assigned, so they may exist and watch meanwhile. The
    // others come after: none of them holds a task, so all they read is about another popug.
    let admin = app.user("admin", "others-admin").await;
    let manager = app.user("manager", "others-manager").await;
    let wendy = app.user("worker", "wendy").await;
    let mut watchers = Vec::new();
    for user in [&manager, &admin] {
        let mut ws = app.ws("graphql-transport-ws").await;
        ws.init(&user.token).await;
        watchers.push(ws);
    }

    let mut types = BTreeMap::new();
    let schema = app
        .ok(
            &admin,
            "{ __schema { types { kind name fields { name type { kind name ofType { kind name \
             ofType { kind name ofType { kind name } } } } } } } }",
            json!({}),
        )
        .await;
    for ty in schema["__schema"]["types"].as_array().expect("types") {
        let name = ty["name"].as_str().expect("a type name");
        if ty["kind"] != "OBJECT" || name.starts_with("__") {
            continue;
        }
        let fields: Vec<(String, String)> = ty["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    named(&f["type"]).0,
                )
            })
            .collect();
        if reach(name) == Reach::Fields {
            for (field, _) in &fields {
                rule(name, field);
            }
        }
        types.insert(name.to_owned(), fields);
    }

    for (i, ws) in watchers.iter_mut().enumerate() {
        ws.subscribe(
            &format!("a{i}"),
            &format!(
                "subscription {{ taskAssigned {{ {} }} }}",
                every_field(&types, "TaskAssignedEvent")
            ),
            json!({}),
        )
        .await;
        ws.subscribe(
            &format!("c{i}"),
            &format!(
                "subscription {{ taskCompleted {{ {} }} }}",
                every_field(&types, "TaskCompletedEvent")
            ),
            json!({}),
        )
        .await;
    }
    // Let both subscriptions start before the events they wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tasks = Vec::new();
    for title in ["Preen the left wing", "Preen the right wing"] {
        let made = app
            .ok(
                &wendy,
                "mutation($input: CreateTaskInput!) { createTask(input: $input) { id assignee { id } } }",
                json!({ "input": { "title": title, "jiraId": "UBERPOP-7", "description": "both sides" } }),
            )
            .await;
        assert_eq!(made["createTask"]["assignee"]["id"], wendy.id.as_str());
        tasks.push(made["createTask"]["id"].clone());
    }
    app.ok(
        &wendy,
        "mutation($id: ID!) { completeTask(id: $id) { id } }",
        json!({ "id": tasks[1] }),
    )
    .await;
    let accountant = app.user("accountant", "others-accountant").await;
    let worker = app.user("worker", "others-worker").await;
    let viewers: BTreeMap<&str, &User> = [
        ("worker", &worker),
        ("manager", &manager),
        ("accountant", &accountant),
        ("admin", &admin),
    ]
    .into();

    // What each role reads of wendy's completed task, of her, and of the task's history.
    let document = format!(
        "query($task: ID!) {{ task(id: $task) {{ {} holder: assignee {{ {} }} moves: history {{ {} }} }} }}",
        every_field(&types, "Task"),
        every_field(&types, "Popug"),
        every_field(&types, "TaskHistoryEntry"),
    );
    let mut read = BTreeMap::new();
    for (role, user) in &viewers {
        let body = app.ok(user, &document, json!({ "task": tasks[1] })).await;
        read.insert(*role, body["task"].clone());
    }
    let mut seen: BTreeMap<(String, String), BTreeMap<&str, Option<bool>>> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (ty, field) in ["Task", "Popug", "TaskHistoryEntry"]
        .into_iter()
        .flat_map(|ty| types[ty].iter().map(move |(field, _)| (ty, field)))
    {
        let rule = rule(ty, field);
        for (role, task) in &read {
            let objects: Vec<&Value> = match ty {
                "Task" => vec![task],
                "Popug" => vec![&task["holder"]],
                _ => task["moves"].as_array().expect("moves").iter().collect(),
            };
            let admins: Vec<&Value> = match ty {
                "Task" => vec![&read["admin"]],
                "Popug" => vec![&read["admin"]["holder"]],
                _ => read["admin"]["moves"]
                    .as_array()
                    .expect("moves")
                    .iter()
                    .collect(),
            };
            let ok = if rule == Rule::Everyone {
                // As the admin reads it: some of these are null for everyone (no shuffle yet).
                let values =
                    |list: &[&Value]| list.iter().map(|o| o[field].clone()).collect::<Vec<_>>();
                values(&objects) == values(&admins)
            } else {
                shown(&objects, field) == sees(rule, role)
            };
            if !ok {
                unexpected.push(format!("{role} read {ty}.{field} about wendy: {task}"));
            }
            seen.entry((ty.to_owned(), field.clone()))
                .or_default()
                .insert(role, Some(sees(rule, role)));
        }
    }

    // The events, as the staff who may watch everyone hear them: managers see no money.
    for (ws, role) in watchers.iter_mut().zip(["manager", "admin"]) {
        let messages = ws.collect(3).await;
        for (ty, field_of) in [
            ("TaskAssignedEvent", "taskAssigned"),
            ("TaskCompletedEvent", "taskCompleted"),
        ] {
            let events: Vec<&Value> = messages
                .iter()
                .map(|m| &m["payload"]["data"][field_of])
                .filter(|event| event.is_object())
                .collect();
            assert!(
                !events.is_empty(),
                "{role} heard no {field_of}: {messages:?}"
            );
            for (field, _) in &types[ty] {
                let rule = rule(ty, field);
                let ok = rule == Rule::Everyone || shown(&events, field) == sees(rule, role);
                if !ok {
                    unexpected.push(format!("{role} heard {ty}.{field} about wendy: {events:?}"));
                }
                let row = seen.entry((ty.to_owned(), field.clone())).or_default();
                row.insert(role, Some(sees(rule, role)));
                // Workers and accountants hear their own events only.
                row.insert("worker", None);
                row.insert("accountant", None);
            }
        }
    }

    // Another popug's money, whole: asked for by naming her, and by a log entry's global id.
    let today = app.ok(&admin, "{ today }", json!({})).await["today"].clone();
    let entry = app
        .ok(
            &admin,
            "query($who: ID!) { auditLog(filter: { popugId: $who }, first: 1) { nodes { id } } }",
            json!({ "who": wendy.id }),
        )
        .await["auditLog"]["nodes"][0]["id"]
        .clone();
    let mut owner_row = BTreeMap::new();
    for (role, user) in &viewers {
        let asks = [
            (
                "account",
                "query($who: ID!) { r: account(popugId: $who) { balance } }",
            ),
            (
                "auditLog",
                "query($who: ID!) { r: auditLog(filter: { popugId: $who }, first: 5) { nodes { amount } } }",
            ),
            (
                "payouts",
                "query($who: ID!) { r: payouts(filter: { popugId: $who }) { totalCount } }",
            ),
            (
                "statement",
                "query($who: ID!, $day: Date!) { r: statement(popugId: $who, day: $day) { closingBalance } }",
            ),
            ("node", "query($entry: ID!) { r: node(id: $entry) { id } }"),
        ];
        for (what, query) in asks {
            let body = app
                .gql(
                    Some(&user.token),
                    query,
                    json!({ "who": wendy.id, "day": today, "entry": entry }),
                )
                .await;
            let got = !body["data"]["r"].is_null() && body["errors"].is_null();
            if got != sees(Rule::Money, role) {
                unexpected.push(format!("{role} asked for wendy's {what}: {body}"));
            }
        }
        owner_row.insert(*role, Some(sees(Rule::Money, role)));
    }

    assert!(unexpected.is_empty(), "{unexpected:#?}");

    let mut table = String::from(
        "| about another popug | worker | manager | accountant | admin |\n\
         | --- | :-: | :-: | :-: | :-: |\n",
    );
    let mark = |row: &BTreeMap<&str, Option<bool>>| -> String {
        EVERY_POPUG
            .iter()
            .map(|role| match row.get(role) {
                Some(Some(true)) => "yes",
                Some(Some(false)) => "",
                _ => "own only",
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for ((ty, field), row) in &seen {
        table += &format!("| `{ty}.{field}` | {} |\n", mark(row));
    }
    let mut owners: Vec<&str> = types
        .keys()
        .map(String::as_str)
        .filter(|ty| reach(ty) == Reach::Owner)
        .collect();
    owners.sort_unstable();
    table += &format!(
        "| {}, whole | {} |\n",
        owners
            .iter()
            .map(|ty| format!("`{ty}`"))
            .collect::<Vec<_>>()
            .join(", "),
        mark(&owner_row)
    );
    assert_doc_section(OTHERS_START, OTHERS_END, &table);
}

const OTHERS_START: &str = "<!-- others: generated by tests/api/authorization.rs -->\n";
const OTHERS_END: &str = "<!-- end of others -->";
