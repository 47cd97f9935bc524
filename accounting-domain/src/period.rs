//! Ranges of business days, and the periods (day, week, month) the figures group them into.

use chrono::{Datelike, Days, Months, NaiveDate};

use crate::AccountingError;

/// Consecutive business days, `from` to `to` inclusive, at most [`DayRange::MAX_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    from: NaiveDate,
    to: NaiveDate,
}

impl DayRange {
    /// The longest range the figures cover at once.
    pub const MAX_DAYS: i64 = 366;

    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, AccountingError> {
        if from > to {
            return Err(AccountingError::BadRange(
                "from must not be after to".into(),
            ));
        }
        if to.signed_duration_since(from).num_days() + 1 > Self::MAX_DAYS {
            return Err(AccountingError::BadRange(format!(
                "a range covers at most {} days",
                Self::MAX_DAYS
            )));
        }
        Ok(Self { from, to })
    }

    /// One day.
    pub fn day(day: NaiveDate) -> Self {
        Self { from: day, to: day }
    }

    pub fn from(&self) -> NaiveDate {
        self.from
    }

    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Its days, oldest first.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let to = self.to;
        self.from.iter_days().take_while(move |day| *day <= to)
    }
}

/// How the figures group days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
}

impl Period {
    /// `range` cut into periods, oldest first; the first and last are cut at the range's ends.
    pub fn cut(self, range: DayRange) -> Vec<DayRange> {
        let mut periods = Vec::new();
        let mut start = range.from;
        while start <= range.to {
            let natural_end = match self {
                Self::Day => Some(start),
                Self::Week => start.checked_add_days(Days::new(
                    6 - u64::from(start.weekday().num_days_from_monday()),
                )),
                Self::Month => start
                    .with_day(1)
                    .and_then(|first| first.checked_add_months(Months::new(1)))
                    .and_then(|next| next.pred_opt()),
            };
            let end = natural_end.unwrap_or(range.to).min(range.to);
            periods.push(DayRange {
                from: start,
                to: end,
            });
            match end.succ_opt() {
                Some(next) => start = next,
                None => break,
            }
        }
        periods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    fn cut(period: Period, from: &str, to: &str) -> Vec<(String, String)> {
        period
            .cut(DayRange::new(date(from), date(to)).expect("a range"))
            .into_iter()
            .map(|p| (p.from().to_string(), p.to().to_string()))
            .collect()
    }

    #[test]
    fn weeks_run_monday_to_sunday_and_are_cut_at_the_range() {
        // 2026-03-04 is a Wednesday.
        assert_eq!(
            cut(Period::Week, "2026-03-04", "2026-03-17"),
            [
                ("2026-03-04".into(), "2026-03-08".into()),
                ("2026-03-09".into(), "2026-03-15".into()),
                ("2026-03-16".into(), "2026-03-17".into()),
            ]
        );
    }

    #[test]
    fn months_end_on_their_last_day_leap_years_included() {
        assert_eq!(
            cut(Period::Month, "2028-01-30", "2028-03-01"),
            [
                ("2028-01-30".into(), "2028-01-31".into()),
                ("2028-02-01".into(), "2028-02-29".into()),
                ("2028-03-01".into(), "2028-03-01".into()),
            ]
        );
        assert_eq!(cut(Period::Day, "2026-12-31", "2027-01-01").len(), 2);
    }

    #[test]
    fn ranges_are_forwards_and_at_most_366_days() {
        assert!(DayRange::new(date("2026-01-02"), date("2026-01-01")).is_err());
        assert!(DayRange::new(date("2028-01-01"), date("2028-12-31")).is_ok());
        assert!(DayRange::new(date("2026-01-01"), date("2027-01-01")).is_ok());
        assert!(DayRange::new(date("2026-01-01"), date("2027-01-02")).is_err());
    }
}
