//! The payout and mail queues a day close leaves, driven straight through the domain on both
//! stores: leases, failed attempts and giving up, an admin's retry, and the pages readers see.

mod support;

use std::time::Duration;

use accounting_domain::{
    AccountingError, Calendar, Payday, PayoutStatus, QueueFilter, Queues, Retry,
};
use ates_db::PageRequest;
use support::{Store, entry};

const RETRY: Retry = Retry {
    max_attempts: 2,
    backoff: Duration::ZERO,
    lease: Duration::from_secs(60),
};

async fn queues_of(store: &Store) {
    let ctx = store.backend;
    for (i, popug) in ["A", "B", "C"].iter().enumerate() {
        entry(
            &store.db,
            popug,
            "TASK_COMPLETED",
            &format!("t{i}"),
            20 + i as i64,
            "2026-03-01T10:00:00Z",
        )
        .await;
    }
    let payday = Payday::new(store.db.clone(), Calendar::utc());
    let day = "2026-03-01".parse().expect("a date");
    payday.close_through(day).await.expect("close");
    let queues = Queues::new(store.db.clone());

    // Two workers claiming at once never hold the same payout.
    let (first, second) = tokio::join!(
        queues.claim_payouts(2, &RETRY),
        queues.claim_payouts(2, &RETRY)
    );
    let (first, second) = (first.expect("claim"), second.expect("claim"));
    // A claimer that lost the race for a row finds fewer; what is left is claimed next.
    let third = queues.claim_payouts(10, &RETRY).await.expect("claim");
    let all: Vec<String> = [&first, &second, &third]
        .into_iter()
        .flatten()
        .map(|p| p.id.clone())
        .collect();
    let mut claimed = all.clone();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), all.len(), "{ctx}: a payout claimed twice");
    assert_eq!(claimed.len(), 3, "{ctx}");
    assert!(
        queues
            .claim_payouts(10, &RETRY)
            .await
            .expect("claim")
            .is_empty(),
        "{ctx}: leased payouts are not due"
    );

    // A failure is retried; the last allowed attempt gives up.
    let payout = [&first, &second, &third]
        .into_iter()
        .flatten()
        .next()
        .expect("a payout")
        .clone();
    let status = queues
        .payout_failed(&payout, "503", &RETRY)
        .await
        .expect("failed");
    assert_eq!(status, PayoutStatus::Pending, "{ctx}");
    let again = queues
        .payout(&payout.id)
        .await
        .expect("read")
        .expect("there");
    let status = queues
        .payout_failed(&again, "503", &RETRY)
        .await
        .expect("failed");
    assert_eq!(status, PayoutStatus::Failed, "{ctx}");

    // Only a failed payout is sent again, from a fresh count.
    let paid = claimed
        .iter()
        .find(|id| **id != payout.id)
        .expect("another");
    queues.payout_paid(paid, "ledger").await.expect("paid");
    assert!(matches!(
        queues.retry_payout(paid).await,
        Err(AccountingError::PayoutNotFailed(_))
    ));
    assert!(matches!(
        queues.retry_payout("no-such-payout").await,
        Err(AccountingError::NoSuchPayout(_))
    ));
    let retried = queues.retry_payout(&payout.id).await.expect("retry");
    assert_eq!(
        (retried.status, retried.attempts),
        (PayoutStatus::Pending, 0),
        "{ctx}"
    );

    // Readers page newest first, by status and by day.
    let page = PageRequest::forward;
    let all = queues
        .payouts(&QueueFilter::default(), &page(2, None))
        .await
        .expect("page");
    assert!(all.has_next, "{ctx}");
    let rest = queues
        .payouts(
            &QueueFilter::default(),
            &page(2, Some(all.items[1].id.clone())),
        )
        .await
        .expect("page");
    assert_eq!(
        (all.items.len(), rest.items.len(), rest.has_next),
        (2, 1, false),
        "{ctx}"
    );
    let paid_only = QueueFilter {
        status: Some(PayoutStatus::Paid),
        ..QueueFilter::default()
    };
    let found = queues
        .payouts(&paid_only, &page(10, None))
        .await
        .expect("page");
    assert_eq!(found.items.len(), 1, "{ctx}");
    let that_day = QueueFilter {
        day: Some(day),
        ..QueueFilter::default()
    };
    let mail = queues
        .mailbox(&that_day, &page(10, None))
        .await
        .expect("mail");
    assert_eq!(
        mail.items.len(),
        3,
        "{ctx}: one mail per payout, found by its payout's day"
    );
    let other_day = QueueFilter {
        day: day.succ_opt(),
        ..QueueFilter::default()
    };
    assert!(
        queues
            .mailbox(&other_day, &page(10, None))
            .await
            .expect("mail")
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_retries_and_pages() {
    on_each_store!("2026-03-02T08:00:00Z", queues_of);
}
