//! Business days: midnight to midnight in the configured time zone.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
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

    /// The time of day an instant shows on the zone's clocks.
    pub fn time_of(&self, at: DateTime<Utc>) -> NaiveTime {
        at.with_timezone(&self.zone).time()
    }

    /// The zone's IANA name (`Europe/Berlin`).
    pub fn zone_name(&self) -> &'static str {
        self.zone.name()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an instant")
    }

    #[test]
    fn a_business_day_runs_from_local_midnight_to_local_midnight() {
        let berlin = Calendar::new("Europe/Berlin").expect("a zone");
        let day: NaiveDate = "2026-03-10".parse().expect("a date");
        assert_eq!(
            berlin.bounds(day),
            (at("2026-03-09T23:00:00Z"), at("2026-03-10T23:00:00Z"))
        );
        assert_eq!(berlin.day_of(at("2026-03-09T23:30:00Z")), day);
        assert_eq!(
            berlin.day_of(at("2026-03-09T22:59:59Z")),
            day.pred_opt().unwrap()
        );
    }

    #[test]
    fn the_day_clocks_go_forward_is_23_hours_long() {
        let berlin = Calendar::new("Europe/Berlin").expect("a zone");
        let (start, end) = berlin.bounds("2026-03-29".parse().expect("a date"));
        assert_eq!(start, at("2026-03-28T23:00:00Z"));
        assert_eq!(end, at("2026-03-29T22:00:00Z"));
        assert!(Calendar::new("Not/AZone").is_none());
    }
}
