//! What a payout's mail says: what the day earned, what was paid, and the day's statement.

use super::Statement;
use crate::Calendar;

/// The message that tells a popug about its payout for the day of `statement`.
pub(super) fn payout_mail(
    statement: &Statement,
    calendar: &Calendar,
    earned: i64,
    paid: i64,
) -> (String, String) {
    let day = statement.day;
    let subject = format!("Your aTES payout for {day}");
    let body = format!(
        "Hello,\n\n\
         on {day} your tasks earned {earned} (rewards less assignment fees).\n\
         At the end of the day your balance of {paid} was paid out to you.\n\n\
         {}\n\
         UberPopug Inc. accounting\n",
        statement.to_text(calendar)
    );
    (subject, body)
}
