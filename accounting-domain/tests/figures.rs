//! The company's figures, read straight from the domain on both stores: the money of a day and
//! the most expensive task of each period.

mod support;

use accounting_domain::{Calendar, DayRange, Figures, Payday, Period};
use chrono::NaiveDate;
use support::{Store, entry};

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

/// A fortnight of completions and fees: 2026-03-02 is a Monday.
async fn seed(store: &Store) {
    let db = &store.db;
    for (popug, kind, task, amount, at) in [
        ("A", "TASK_ASSIGNED", "t1", -12, "2026-03-02T09:00:00Z"),
        ("A", "TASK_COMPLETED", "t1", 31, "2026-03-02T10:00:00Z"),
        ("B", "TASK_ASSIGNED", "t2", -15, "2026-03-03T09:00:00Z"),
        // The week's top reward twice: the earlier completion wins.
        ("B", "TASK_COMPLETED", "t2", 38, "2026-03-04T10:00:00Z"),
        ("A", "TASK_COMPLETED", "t3", 38, "2026-03-05T10:00:00Z"),
        ("C", "TASK_COMPLETED", "t4", 22, "2026-03-10T23:59:59Z"),
        // Midnight belongs to the next day, and the next week.
        ("C", "TASK_COMPLETED", "t5", 40, "2026-03-16T00:00:00Z"),
    ] {
        entry(db, popug, kind, task, amount, at).await;
    }
}

async fn figures_of(store: &Store) {
    seed(store).await;
    let payday = Payday::new(store.db.clone(), Calendar::utc());
    let figures = Figures::new(store.db.clone(), payday);
    let ctx = store.backend;

    let moved = figures.money_moved(day("2026-03-02")).await.expect("moved");
    assert_eq!(
        (moved.fees_debited, moved.rewards_credited),
        (12, 31),
        "{ctx}"
    );
    assert_eq!(moved.management_earnings(), -19, "{ctx}");

    let range = DayRange::new(day("2026-03-01"), day("2026-03-16")).expect("a range");
    let weeks = figures
        .most_expensive_per(Period::Week, range)
        .await
        .expect("weeks");
    let tops: Vec<(String, Option<(String, i64)>)> = weeks
        .iter()
        .map(|top| {
            (
                top.period.from().to_string(),
                top.task.as_ref().map(|t| (t.task_id.0.clone(), t.reward)),
            )
        })
        .collect();
    assert_eq!(
        tops,
        [
            ("2026-03-16".to_owned(), Some(("t5".to_owned(), 40))),
            ("2026-03-09".to_owned(), Some(("t4".to_owned(), 22))),
            ("2026-03-02".to_owned(), Some(("t2".to_owned(), 38))),
            // Sunday 1 March, cut at the range's start: nothing completed.
            ("2026-03-01".to_owned(), None),
        ],
        "{ctx}: newest week first, ties to the earliest completion"
    );

    let one = figures
        .most_expensive(DayRange::day(day("2026-03-10")))
        .await
        .expect("one day");
    assert_eq!(one.map(|t| t.task_id.0), Some("t4".to_owned()), "{ctx}");

    let days = figures
        .most_expensive_per(Period::Day, range)
        .await
        .expect("days");
    assert_eq!(days.len(), 16, "{ctx}");
    assert_eq!(
        days.iter().filter(|top| top.task.is_some()).count(),
        5,
        "{ctx}: the days with a completion"
    );

    // Each day's money, read for the whole range at once, lands on its own day.
    let per_day: Vec<(String, i64, i64)> = figures
        .days(range)
        .await
        .expect("the days' figures")
        .into_iter()
        .filter(|f| f.moved != Default::default())
        .map(|f| {
            let moved = f.moved;
            (
                f.day.to_string(),
                moved.fees_debited,
                moved.rewards_credited,
            )
        })
        .collect();
    assert_eq!(
        per_day,
        [
            ("2026-03-02".to_owned(), 12, 31),
            ("2026-03-03".to_owned(), 15, 0),
            ("2026-03-04".to_owned(), 0, 38),
            ("2026-03-05".to_owned(), 0, 38),
            ("2026-03-10".to_owned(), 0, 22),
            ("2026-03-16".to_owned(), 0, 40),
        ],
        "{ctx}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_task_of_each_period_in_one_query() {
    on_each_store!("2026-03-20T12:00:00Z", figures_of);
}
