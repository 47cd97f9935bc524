//! What a payout's mail says.

use chrono::NaiveDate;

/// The message that tells a popug about its payout.
pub(super) fn payout_mail(day: NaiveDate, earned: i64, paid: i64) -> (String, String) {
    let subject = format!("Your aTES payout for {day}");
    let body = format!(
        "Hello,\n\n\
         on {day} your tasks earned {earned} (rewards less assignment fees).\n\
         At the end of the day your balance of {paid} was paid out to you.\n\n\
         UberPopug Inc. accounting\n"
    );
    (subject, body)
}
