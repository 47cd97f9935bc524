//! Business days: midnight to midnight in the configured time zone.

use anyhow::Context as _;
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy)]
pub struct Calendar {
    zone: Tz,
}

impl Calendar {
    pub fn new(zone: &str) -> anyhow::Result<Self> {
        let zone = zone
            .parse::<Tz>()
            .ok()
            .with_context(|| format!("ATES_TIMEZONE: {zone:?} is not an IANA time zone"))?;
        Ok(Self { zone })
    }

    pub fn today(&self) -> NaiveDate {
        Utc::now().with_timezone(&self.zone).date_naive()
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
