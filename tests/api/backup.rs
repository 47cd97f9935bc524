//! `gateway backup`: a copy taken while the gateway writes restores every acknowledged write,
//! passes `verify`, and charges the next task at once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{Gateway, TestDatabase, User, key_of, post_graphql, run_gateway};

/// `gateway …` on the database at `url`, with `folder` as its data folder.
fn run(args: &[&str], url: &str, folder: &Path) -> (bool, String) {
    run_gateway(
        args,
        &[
            ("DATABASE_URL", url),
            ("ATES_DATA_DIR", folder.to_str().unwrap()),
        ],
    )
}

/// Creates a task titled `title` as `user`; its key.
async fn create(client: &reqwest::Client, url: &str, user: &User, title: &str) -> String {
    let body = post_graphql(
        client,
        url,
        &user.token,
        &format!("mutation {{ createTask(input: {{title: \"{title}\"}}) {{ id }} }}"),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    key_of(&body["data"]["createTask"]["id"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_restores_every_acknowledged_task() {
    let database = TestDatabase::sqlite();
    let client = reqwest::Client::new();
    let manager = User::new("manager", "mark");
    let workers: Vec<User> = (0..3)
        .map(|i| User::new("worker", &format!("w{i}")))
        .collect();
    let gateway = Gateway::start(&database);
    for user in workers.iter().chain([&manager]) {
        post_graphql(&client, &gateway.url, &user.token, "{ me { id } }").await;
    }

    // Four clients create tasks back to back; each acknowledged id is kept.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, manager) = (client.clone(), gateway.url.clone(), manager.clone());
            let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = create(&client, &url, &manager, &format!("w{w} {i}")).await;
                    acknowledged.lock().unwrap().push(id);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_backup = acknowledged.lock().unwrap().clone();
    let copy = database.folder().join("copy.db");
    let (url, folder, to) = (
        database.url.clone(),
        database.folder().to_owned(),
        copy.clone(),
    );
    let (ok, text) =
        tokio::task::spawn_blocking(move || run(&["backup", to.to_str().unwrap()], &url, &folder))
            .await
            .unwrap();
    assert!(ok, "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        acknowledged.lock().unwrap().len() > before_backup.len(),
        "the writes went on while the backup ran"
    );
    gateway.kill();

    // Only its owner may read the copy: it holds every popug's money.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup is owner-only");
    }
    // A second backup never overwrites the first.
    let (ok, text) = run(
        &["backup", copy.to_str().unwrap()],
        &database.url,
        database.folder(),
    );
    assert!(!ok && text.contains("exists already"), "{text}");

    // Restored as the only file of a fresh data folder, it passes `verify`.
    let restored = TestDatabase::sqlite();
    std::fs::copy(&copy, restored.folder().join("ates.db")).unwrap();
    let (ok, text) = run(&["verify"], &restored.url, restored.folder());
    assert!(ok, "{text}");
    assert!(text.contains("the ledger holds"), "{text}");
    let db = restored.connect().await;
    let tasks: Vec<String> = sqlx::query_scalar("SELECT id FROM tasks")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let missing: Vec<&String> = before_backup
        .iter()
        .filter(|id| !tasks.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing after: {missing:?}"
    );

    // A gateway on the restored file charges a new task's fee within a second.
    let gateway = Gateway::start(&restored);
    let started = Instant::now();
    let id = create(&client, &gateway.url, &manager, "after the restore").await;
    loop {
        let charged: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE task_id = ? AND kind = 'TASK_ASSIGNED'",
        )
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        if charged == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the fee was not charged within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.kill();
}

#[tokio::test]
async fn postgres_is_backed_up_with_its_own_tools() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let copy = database.folder().join("copy.db");
    let (ok, text) = run(
        &["backup", copy.to_str().unwrap()],
        &database.url,
        database.folder(),
    );
    assert!(!ok && text.contains("pg_dump"), "{text}");
    assert!(!copy.exists());
    database.finish().await;
}
