//! Advisory locks on PostgreSQL: one holder at a time for each lock, and no lock in the way of
//! another. (On SQLite they are no-ops: one process, one writer.)

use std::time::Duration;

use ates_db::testing::Scratch;
use ates_db::{Db, Lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lock_has_one_holder_and_stands_in_no_other_lock_s_way() {
    let Some(scratch) = Scratch::postgres().await else {
        return;
    };
    let db = Db::connect(&scratch.url, 4).await.expect("connect");
    let close = db.lock_session(Lock::DayClose).await.expect("take");
    assert!(
        db.try_lock_session(Lock::DayClose)
            .await
            .expect("ask")
            .is_none(),
        "a second holder of the same lock"
    );

    // A day close in progress does not stop the ledger: posting takes a lock of its own.
    let mut tx = db.begin_write().await.expect("begin");
    tokio::time::timeout(
        Duration::from_secs(5),
        db.lock_transaction(&mut tx, Lock::Posting),
    )
    .await
    .expect("posting waited for the day close's lock")
    .expect("lock");
    tx.commit().await.expect("commit");

    close.release().await;
    let again = db.try_lock_session(Lock::DayClose).await.expect("ask");
    assert!(again.is_some(), "released, the lock is free");

    // Dropped without a release, the lock goes with its connection, not back to the pool.
    drop(again);
    let mut freed = false;
    for _ in 0..50 {
        if let Some(lock) = db.try_lock_session(Lock::DayClose).await.expect("ask") {
            lock.release().await;
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a dropped lock was still held");

    db.pool().close().await;
    scratch.finish().await;
}

#[tokio::test]
async fn sqlite_locks_are_held_at_once() {
    let dir = std::env::temp_dir().join(format!("ates-locks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Db::connect(&format!("sqlite://{}", dir.join("a.db").display()), 2)
        .await
        .expect("connect");
    let held = db.lock_session(Lock::Relay).await.expect("take");
    let second = db.try_lock_session(Lock::Relay).await.expect("ask");
    assert!(second.is_some(), "one process: nothing to wait for");
    held.release().await;
    std::fs::remove_dir_all(dir).ok();
}
