//! Business days: midnight to midnight in the configured time zone.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    zone: Tz,
}

impl Calendar {
    /// The calendar of an IANA time zone (`Europe/Berlin`); `None` for an unknown name.
    pub fn new(zone: &str) -> Option<Self> {
        zone.parse::<Tz>().ok().map(|zone| Self { zone })
    }

    pub fn utc() -> Self {
        Self { zone: Tz::UTC }
    }

    /// The business day an instant falls in.
    pub fn day_of(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// The instants `[start, end)` of a business day.
    pub fn bounds(&self, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let next = day.checked_add_days(Days::new(1)).unwrap_or(day);
        (self.midnight(day), self.midnight(next))
    }

    /// The first instant of a day; on a day whose midnight a DST change skips, the first
    /// instant that exists.
    fn midnight(&self, day: NaiveDate) -> DateTime<Utc> {
        let mut local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        for _ in 0..4 {
            if let Some(at) = self.zone.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            local += chrono::Duration::minutes(30);
        }
        Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
    }
}
