//! The CSV exports: the audit log and the daily summaries, with GraphQL's token and
//! visibility, in RFC 4180 with a header row, each row the same as GraphQL says, text that
//! would start a formula defused, and bad ranges refused in the usual JSON shape.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, User, key_of};
use crate::on_both_backends;

on_both_backends!(
    the_audit_log_goes_out_as_csv,
    a_long_export_is_whole_and_in_time_order
);

const LOG: &str = "query($from: DateTime!, $to: DateTime!, $popug: ID) { \
    auditLog(filter: { from: $from, to: $to, popugId: $popug, oldestFirst: true }, first: 100) { \
    edges { node { seq loggedAt kind amount balanceAfter popugId taskId } } } }";

/// An export's status, content type and body.
async fn export(app: &TestApp, token: Option<&str>, path: &str) -> (u16, String, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, media, response.text().await.expect("a body"))
}

/// The rows of a CSV body, the header row first.
fn rows(body: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|record| {
            record
                .expect("an RFC 4180 record")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The rows as maps from the header's names.
fn records(body: &str) -> Vec<HashMap<String, String>> {
    let mut rows = rows(body).into_iter();
    let header = rows.next().expect("a header row");
    rows.map(|row| header.iter().cloned().zip(row).collect())
        .collect()
}

/// The `extensions.code` of a refused export, which must be JSON in the usual shape.
async fn refused(app: &TestApp, token: Option<&str>, path: &str) -> (u16, String) {
    let (status, media, body) = export(app, token, path).await;
    assert!(media.starts_with("application/json"), "{path}: {media}");
    let body: Value = serde_json::from_str(&body).expect("a JSON refusal");
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no code in {body}"));
    (status, code.to_owned())
}

async fn create(app: &TestApp, manager: &User, title: &str) -> (String, String) {
    let task = app.create_task(manager, title).await;
    (
        task["id"].as_str().expect("an id").to_owned(),
        task["assignee"]["id"]
            .as_str()
            .expect("an assignee")
            .to_owned(),
    )
}

async fn the_audit_log_goes_out_as_csv(database: TestDatabase) {
    let clock = database.set_clock("2026-03-01T10:00:00Z");
    let app = TestApp::start_with(database, |config| {
        config.server.clock_file = Some(clock);
        config.payday.close_check_secs = 3600;
    })
    .await;
    let manager = app.user("manager", "mia").await;
    let accountant = app.user("accountant", "ada").await;
    let bob = app.user("worker", "bob").await;
    let formula = "=HYPERLINK(\"http://evil.example\")";
    let (risky, assignee) = create(&app, &manager, formula).await;
    create(&app, &manager, "Plain, with \"quotes\"").await;
    let assignee = [&manager, &accountant, &bob]
        .into_iter()
        .find(|user| user.id == assignee)
        .expect("someone of ours holds it");
    app.ok(
        assignee,
        "mutation($id: ID!) { completeTask(id: $id) { id } }",
        json!({ "id": risky }),
    )
    .await;
    app.database.set_clock("2026-03-02T10:00:00Z");
    create(&app, &manager, "+ on day two").await;

    // The first day, as the accountant sees it: the header, then GraphQL's entries of that
    // day, oldest first, field for field.
    let (status, media, body) = export(
        &app,
        Some(&accountant.token),
        "/exports/audit-log.csv?from=2026-03-01&to=2026-03-01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(media.starts_with("text/csv"), "{media}");
    assert!(
        body.starts_with(
            "seq,logged_at,business_day,kind,amount,balance_after,popug_id,task_id,task_key,\
             task_title,event_id\r\n"
        ),
        "{body}"
    );
    assert!(body.ends_with("\r\n"));
    let day = app
        .ok(
            &accountant,
            LOG,
            json!({ "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z" }),
        )
        .await;
    let expected: Vec<Vec<String>> = day["auditLog"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let at: chrono::DateTime<chrono::Utc> =
                text(&node["loggedAt"]).parse().expect("a time");
            vec![
                text(&node["seq"]),
                at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "2026-03-01".to_owned(),
                text(&node["kind"]),
                text(&node["amount"]),
                text(&node["balanceAfter"]),
                // The export carries each object's own key, as the database and the other
                // systems know it, not the API's global id.
                key_of(&node["popugId"]),
                key_of(&node["taskId"]),
            ]
        })
        .collect();
    let exported = records(&body);
    let columns = [
        "seq",
        "logged_at",
        "business_day",
        "kind",
        "amount",
        "balance_after",
        "popug_id",
        "task_id",
    ];
    let actual: Vec<Vec<String>> = exported
        .iter()
        .map(|row| columns.iter().map(|c| row[*c].clone()).collect())
        .collect();
    // Two creations, two fees, one reward.
    assert_eq!(actual.len(), 5, "{body}");
    assert_eq!(actual, expected);

    // A title that would run as a formula is text with a leading quote, and quoted; amounts
    // are bare integers.
    let titled: Vec<&str> = exported
        .iter()
        .filter(|row| row["task_id"] == key_of(&json!(risky)))
        .map(|row| row["task_title"].as_str())
        .collect();
    assert!(
        titled.iter().all(|title| *title == format!("'{formula}")),
        "{titled:?}"
    );
    assert!(
        body.contains("\"'=HYPERLINK(\"\"http://evil.example\"\")\""),
        "{body}"
    );
    assert!(body.contains("\"Plain, with \"\"quotes\"\"\""), "{body}");
    let reward = exported
        .iter()
        .find(|row| row["kind"] == "TASK_COMPLETED")
        .expect("the reward");
    assert!(reward["amount"].parse::<i64>().expect("an integer") >= 20);
    assert!(body.contains(&format!(",{},", reward["amount"])), "{body}");

    // Kinds, as one list or repeated.
    for query in [
        "kinds=TASK_ASSIGNED,TASK_COMPLETED",
        "kinds=TASK_ASSIGNED&kinds=TASK_COMPLETED",
    ] {
        let (_, _, body) = export(
            &app,
            Some(&accountant.token),
            &format!("/exports/audit-log.csv?from=2026-03-01&to=2026-03-02&{query}"),
        )
        .await;
        let kinds: Vec<String> = records(&body)
            .into_iter()
            .map(|row| row["kind"].clone())
            .collect();
        assert_eq!(kinds.len(), 4, "{query}: {body}");
        assert!(
            kinds.iter().all(|k| k != "TASK_CREATED"),
            "{query}: {kinds:?}"
        );
    }

    // A popug exports its own entries only, and may not ask for another's.
    let (status, _, body) = export(
        &app,
        Some(&bob.token),
        "/exports/audit-log.csv?from=2026-03-01&to=2026-03-02",
    )
    .await;
    assert_eq!(status, 200);
    let own = records(&body);
    assert!(own.iter().all(|row| row["popug_id"] == bob.key), "{body}");
    let graphql = app
        .ok(
            &bob,
            LOG,
            json!({ "from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        own.len(),
        graphql["auditLog"]["edges"]
            .as_array()
            .expect("edges")
            .len()
    );
    let others = format!(
        "/exports/audit-log.csv?from=2026-03-01&to=2026-03-02&popugId={}",
        manager.id
    );
    assert_eq!(
        refused(&app, Some(&bob.token), &others).await,
        (403, "FORBIDDEN".into())
    );
    let (status, _, _) = export(&app, Some(&accountant.token), &others).await;
    assert_eq!(status, 200);

    // The daily summaries: the bookkeepers', day by day as GraphQL gives them.
    let (status, _, body) = export(
        &app,
        Some(&accountant.token),
        "/exports/daily-summaries.csv?from=2026-03-01&to=2026-03-02",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let summaries = app
        .ok(
            &accountant,
            "query { dailySummaries(from: \"2026-03-01\", to: \"2026-03-02\") { day closed \
             feesDebited rewardsCredited managementEarnings payoutCount paidTotal \
             negativeBalanceCount } }",
            json!({}),
        )
        .await;
    let exported: Vec<Value> = records(&body)
        .into_iter()
        .map(|row| {
            let number = |name: &str| row[name].parse::<i64>().expect("an integer");
            json!({
                "day": row["business_day"],
                "closed": row["closed"] == "true",
                "feesDebited": number("fees_debited"),
                "rewardsCredited": number("rewards_credited"),
                "managementEarnings": number("management_earnings"),
                "payoutCount": number("payout_count"),
                "paidTotal": number("paid_total"),
                "negativeBalanceCount": number("negative_balance_count"),
            })
        })
        .collect();
    assert_eq!(Value::Array(exported), summaries["dailySummaries"]);
    assert_eq!(
        refused(
            &app,
            Some(&bob.token),
            "/exports/daily-summaries.csv?from=2026-03-01&to=2026-03-02"
        )
        .await,
        (403, "FORBIDDEN".into())
    );

    // No token, a bad date, a year and two days, a missing bound, an unknown kind or name.
    assert_eq!(
        refused(
            &app,
            None,
            "/exports/audit-log.csv?from=2026-03-01&to=2026-03-01"
        )
        .await,
        (401, "UNAUTHENTICATED".into())
    );
    for query in [
        "from=2026-03-01&to=2026-02-30",
        "from=yesterday&to=2026-03-01",
        "from=2025-03-01&to=2026-03-02",
        "from=2026-03-02&to=2026-03-01",
        "to=2026-03-01",
        "from=2026-03-01&to=2026-03-01&kinds=BRIBE",
        "from=2026-03-01&to=2026-03-01&popug=x",
    ] {
        for export in ["audit-log", "daily-summaries"] {
            if export == "daily-summaries" && query.contains("kinds") {
                continue;
            }
            let path = format!("/exports/{export}.csv?{query}");
            assert_eq!(
                refused(&app, Some(&accountant.token), &path).await,
                (400, "BAD_USER_INPUT".into()),
                "{path}"
            );
        }
    }
}

/// Entries written straight into the log: `count` of them for a few popugs over three days,
/// in two statements.
async fn seed_log(db: &ates_db::Db, count: usize) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .expect("an instant")
        .timestamp_micros();
    // Three days of microseconds, spread over the entries.
    let step = 3 * 86_400_000_000 / i64::try_from(count).expect("a count");
    let rows: Vec<ates_db::Value> = (0..count)
        .flat_map(|i| {
            let at = start + step * i64::try_from(i).expect("an index");
            let amount = if i % 2 == 0 { -10 } else { 25 };
            [
                ates_db::Value::from(uuid::Uuid::new_v4().to_string()),
                if amount < 0 {
                    "TASK_ASSIGNED"
                } else {
                    "TASK_COMPLETED"
                }
                .into(),
                amount.into(),
                0i64.into(),
                format!("task-{i}").into(),
                format!("popug-{}", i % 7).into(),
                at.into(),
            ]
        })
        .collect();
    let mut conn = db.pool().acquire().await.expect("a connection");
    for chunk in rows.chunks(7 * 1000) {
        ates_db::insert_rows(
            &mut conn,
            "INSERT INTO audit_log (event_id, kind, amount, balance_after, task_id, popug_id, logged_at) VALUES",
            "",
            7,
            chunk.to_vec(),
        )
        .await
        .expect("seed the log");
    }
}

async fn a_long_export_is_whole_and_in_time_order(database: TestDatabase) {
    let app = TestApp::start_with(database, |_| {}).await;
    seed_log(&app.db, 2_500).await;
    let accountant = app.user("accountant", "ada").await;
    let count = |from: &str, to: &str| {
        let (app, accountant) = (&app, &accountant);
        let query = format!(
            "{{ auditLog(filter: {{ from: \"{from}\", to: \"{to}\" }}, first: 1) {{ totalCount }} }}"
        );
        async move {
            app.ok(accountant, &query, json!({})).await["auditLog"]["totalCount"]
                .as_i64()
                .expect("a count")
        }
    };

    let (status, _, body) = export(
        &app,
        Some(&accountant.token),
        "/exports/audit-log.csv?from=2026-03-01&to=2026-03-03",
    )
    .await;
    assert_eq!(status, 200);
    let rows = records(&body);
    assert_eq!(rows.len(), 2_500);
    let seqs: Vec<i64> = rows
        .iter()
        .map(|r| r["seq"].parse().expect("a seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in the order logged");
    let days: Vec<&str> = rows.iter().map(|r| r["business_day"].as_str()).collect();
    assert!(days.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(days.first(), Some(&"2026-03-01"));
    assert_eq!(days.last(), Some(&"2026-03-03"));

    // One day of them, as many as GraphQL counts.
    let (_, _, body) = export(
        &app,
        Some(&accountant.token),
        "/exports/audit-log.csv?from=2026-03-02&to=2026-03-02",
    )
    .await;
    let second = records(&body);
    assert_eq!(
        i64::try_from(second.len()).expect("a length"),
        count("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z").await
    );
    assert!(second.iter().all(|r| r["business_day"] == "2026-03-02"));
    assert!(
        second
            .iter()
            .all(|r| r["logged_at"].starts_with("2026-03-02T") && r["logged_at"].ends_with('Z'))
    );
}
