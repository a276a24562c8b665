//! Schedule expressions as EventBridge reads them: `rate(value unit)` and `cron(…)` with six
//! fields, in UTC, to the minute.
//!
//! Parsed here rather than by a cron crate: AWS's dialect is its own (a year field, days of the
//! week counted from Sunday = 1, `?` in exactly one of the two day fields, `L`, `W` and `#`), and
//! which expressions it refuses is part of the contract users rely on. Calendar arithmetic is the
//! `time` crate's. Finding a tick scans days, never minutes, and is bounded by the year field's
//! range (1970–2199): an expression that never fires again answers `None`, not a loop.

#[cfg(test)]
use time::Month;
use time::{Date, Weekday};

use crate::error::{EventsError, Result};

const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;
const MINUTES_A_DAY: u32 = 1440;
/// The Julian day number of 1970-01-01.
const EPOCH_JULIAN: i64 = 2_440_588;
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;
/// EventBridge's longest schedule expression.
pub const MAX_LEN: usize = 256;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// When a scheduled rule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `every_ms`, counted from when the schedule was set (AWS: "a rate expression starts
    /// when you create the scheduled event rule").
    Rate { every_ms: u64 },
    /// At the minutes a cron expression names.
    Cron(Box<Cron>),
}

/// A parsed cron expression: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// Indexed by month number (1–12).
    months: Vec<bool>,
    /// Indexed by year − 1970.
    years: Vec<bool>,
    days: Days,
}

/// The day fields: exactly one of them is given, the other is `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    OfMonth {
        /// Indexed by day (1–31).
        days: Vec<bool>,
        /// `L`: the last day of the month.
        last: bool,
        /// `LW`: the last weekday (Monday–Friday) of the month.
        last_weekday: bool,
        /// `nW`: the weekday nearest to day n, within its month.
        nearest_weekday: Vec<u8>,
    },
    OfWeek {
        /// Indexed by weekday (1 = Sunday … 7 = Saturday).
        days: Vec<bool>,
        /// `nL`: the last such weekday of the month.
        last_of_month: Vec<bool>,
        /// `n#k`: the k-th such weekday of the month.
        nth: Vec<(u8, u8)>,
    },
}

fn invalid() -> EventsError {
    EventsError::validation("Parameter ScheduleExpression is not valid.")
}

impl Schedule {
    /// Parses an expression; AWS's `ValidationException` when it is not one.
    pub fn parse(text: &str) -> Result<Schedule> {
        if text.len() > MAX_LEN {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value at 'scheduleExpression' failed to satisfy constraint: Member must have length less than or equal to {MAX_LEN}"
            )));
        }
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            return parse_rate(inner).ok_or_else(invalid);
        }
        if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
            return Cron::parse(inner)
                .map(|c| Schedule::Cron(Box::new(c)))
                .ok_or_else(invalid);
        }
        Err(invalid())
    }

    /// The first tick strictly after `after_ms`. `since_ms` is when the schedule was set (a
    /// rate's ticks are `since + k × period`, k ≥ 1). `None`: it never fires again.
    pub fn next_after(&self, since_ms: u64, after_ms: u64) -> Option<u64> {
        match self {
            Schedule::Rate { every_ms } => {
                let k = if after_ms < since_ms {
                    1
                } else {
                    (after_ms - since_ms) / every_ms + 1
                };
                since_ms.checked_add(k.checked_mul(*every_ms)?)
            }
            Schedule::Cron(c) => c.next_after(after_ms),
        }
    }

    /// The last tick at or before `at_ms` (and after `since_ms`, for a rate).
    pub fn latest_at_or_before(&self, since_ms: u64, at_ms: u64) -> Option<u64> {
        match self {
            Schedule::Rate { every_ms } => {
                let k = at_ms.checked_sub(since_ms)? / every_ms;
                (k > 0).then(|| since_ms + k * every_ms)
            }
            Schedule::Cron(c) => c.latest_at_or_before(at_ms),
        }
    }
}

/// `value unit`: a positive whole number and `minute(s)`, `hour(s)` or `day(s)`, singular
/// exactly when the value is 1.
fn parse_rate(inner: &str) -> Option<Schedule> {
    let mut parts = inner.split(' ');
    let (value, unit) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = value.parse().ok().filter(|v| *v > 0)?;
    let (singular, plural, ms) = match unit {
        "minute" | "minutes" => ("minute", "minutes", MINUTE_MS),
        "hour" | "hours" => ("hour", "hours", 60 * MINUTE_MS),
        "day" | "days" => ("day", "days", DAY_MS),
        _ => return None,
    };
    let expected = if value == 1 { singular } else { plural };
    if unit != expected {
        return None;
    }
    Some(Schedule::Rate {
        every_ms: value.checked_mul(ms)?,
    })
}

impl Cron {
    fn parse(inner: &str) -> Option<Cron> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields.as_slice() else {
            return None;
        };
        let days = match (*dom, *dow) {
            ("?", "?") => return None,
            (dom, "?") => parse_days_of_month(dom)?,
            ("?", dow) => parse_days_of_week(dow)?,
            _ => return None,
        };
        Some(Cron {
            minutes: parse_field(minutes, 0, 59, &[])?,
            hours: parse_field(hours, 0, 23, &[])?,
            months: parse_field(month, 1, 12, &MONTHS)?,
            years: parse_field(year, FIRST_YEAR as u32, LAST_YEAR as u32, &[])?
                .split_off(FIRST_YEAR as usize),
            days,
        })
    }

    fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = (after_ms / MINUTE_MS + 1) * MINUTE_MS;
        let mut day = (start / DAY_MS) as i64;
        let mut from = ((start % DAY_MS) / MINUTE_MS) as u32;
        loop {
            let date = date_of(day)?;
            if date.year() > LAST_YEAR {
                return None;
            }
            if !self.year_allowed(date.year()) {
                // On to the next 1 January.
                day += i64::from(days_in_year(date.year()) - date.ordinal() + 1);
                from = 0;
                continue;
            }
            if !self.months[date.month() as usize] {
                day += i64::from(date.month().length(date.year()) - date.day() + 1);
                from = 0;
                continue;
            }
            if self.day_matches(date) {
                if let Some(m) = self.first_minute_from(from) {
                    return Some(day as u64 * DAY_MS + u64::from(m) * MINUTE_MS);
                }
            }
            day += 1;
            from = 0;
        }
    }

    fn latest_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let mut day = (at_ms / DAY_MS) as i64;
        let mut upto = ((at_ms % DAY_MS) / MINUTE_MS) as u32;
        loop {
            let date = date_of(day)?;
            if date.year() < FIRST_YEAR {
                return None;
            }
            if !self.year_allowed(date.year()) {
                // Back to the previous 31 December.
                day -= i64::from(date.ordinal());
                upto = MINUTES_A_DAY - 1;
                continue;
            }
            if !self.months[date.month() as usize] {
                day -= i64::from(date.day());
                upto = MINUTES_A_DAY - 1;
                continue;
            }
            if self.day_matches(date) {
                if let Some(m) = self.last_minute_upto(upto) {
                    return Some(day as u64 * DAY_MS + u64::from(m) * MINUTE_MS);
                }
            }
            day -= 1;
            upto = MINUTES_A_DAY - 1;
        }
    }

    fn year_allowed(&self, year: i32) -> bool {
        usize::try_from(year - FIRST_YEAR)
            .ok()
            .and_then(|i| self.years.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// The first allowed minute of a day at or after minute `from`.
    fn first_minute_from(&self, from: u32) -> Option<u32> {
        (from..MINUTES_A_DAY)
            .find(|m| self.hours[(m / 60) as usize] && self.minutes[(m % 60) as usize])
    }

    /// The last allowed minute of a day at or before minute `upto`.
    fn last_minute_upto(&self, upto: u32) -> Option<u32> {
        (0..=upto)
            .rev()
            .find(|m| self.hours[(m / 60) as usize] && self.minutes[(m % 60) as usize])
    }

    fn day_matches(&self, date: Date) -> bool {
        let length = date.month().length(date.year());
        let d = date.day();
        match &self.days {
            Days::OfMonth {
                days,
                last,
                last_weekday,
                nearest_weekday,
            } => {
                days[d as usize]
                    || (*last && d == length)
                    || (*last_weekday && d == last_weekday_of(date, length))
                    || nearest_weekday
                        .iter()
                        .any(|n| nearest_weekday_to(*n, date, length) == Some(d))
            }
            Days::OfWeek {
                days,
                last_of_month,
                nth,
            } => {
                let weekday = date.weekday().number_from_sunday();
                days[weekday as usize]
                    || (last_of_month[weekday as usize] && d + 7 > length)
                    || nth
                        .iter()
                        .any(|(w, k)| *w == weekday && (d - 1) / 7 + 1 == *k)
            }
        }
    }
}

/// The date `day` days after 1970-01-01.
fn date_of(day: i64) -> Option<Date> {
    Date::from_julian_day(i32::try_from(EPOCH_JULIAN + day).ok()?).ok()
}

fn days_in_year(year: i32) -> u16 {
    if time::util::is_leap_year(year) {
        366
    } else {
        365
    }
}

/// The same month's day `day`, as a date.
fn in_month(date: Date, day: u8) -> Option<Date> {
    Date::from_calendar_date(date.year(), date.month(), day).ok()
}

fn last_weekday_of(date: Date, length: u8) -> u8 {
    match in_month(date, length).map(Date::weekday) {
        Some(Weekday::Saturday) => length - 1,
        Some(Weekday::Sunday) => length - 2,
        _ => length,
    }
}

/// `nW`: day n if it is a weekday, else the nearest weekday of the same month.
fn nearest_weekday_to(n: u8, date: Date, length: u8) -> Option<u8> {
    if n > length {
        return None;
    }
    Some(match in_month(date, n)?.weekday() {
        Weekday::Saturday if n == 1 => 3,
        Weekday::Saturday => n - 1,
        Weekday::Sunday if n == length => n - 2,
        Weekday::Sunday => n + 1,
        _ => n,
    })
}

/// A numeric field: a comma-separated list of `*`, `v`, `a-b` (wrapping past the maximum when
/// a > b), each optionally `/step`. Values may be names (`names[0]` is `min`). The result is
/// indexed by value.
fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Option<Vec<bool>> {
    let mut allowed = vec![false; max as usize + 1];
    for item in field.split(',') {
        add_item(item, min, max, names, &mut allowed)?;
    }
    Some(allowed)
}

fn add_item(item: &str, min: u32, max: u32, names: &[&str], allowed: &mut [bool]) -> Option<()> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, parse_number(s).filter(|s| *s > 0)?),
        None => (item, 1),
    };
    let (from, to) = if range == "*" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a, min, max, names)?, value(b, min, max, names)?)
    } else {
        let v = value(range, min, max, names)?;
        // `a/step` runs from a to the maximum.
        (v, if item.contains('/') { max } else { v })
    };
    let span = if from <= to {
        to - from
    } else {
        max - from + 1 + to - min
    };
    let mut offset = 0;
    while offset <= span {
        let v = from + offset;
        let v = if v > max { v - max - 1 + min } else { v };
        allowed[v as usize] = true;
        offset += step;
    }
    Some(())
}

fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A value of a field: a number in range or one of `names` (any case).
fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Option<u32> {
    if let Some(n) = parse_number(text) {
        return (min..=max).contains(&n).then_some(n);
    }
    names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|i| min + i as u32)
}

fn parse_days_of_month(field: &str) -> Option<Days> {
    let mut days = vec![false; 32];
    let (mut last, mut last_weekday, mut nearest_weekday) = (false, false, Vec::new());
    for item in field.split(',') {
        match item {
            "L" => last = true,
            "LW" => last_weekday = true,
            _ => match item.strip_suffix('W') {
                Some(n) => nearest_weekday.push(value(n, 1, 31, &[])? as u8),
                None => add_item(item, 1, 31, &[], &mut days)?,
            },
        }
    }
    Some(Days::OfMonth {
        days,
        last,
        last_weekday,
        nearest_weekday,
    })
}

fn parse_days_of_week(field: &str) -> Option<Days> {
    let mut days = vec![false; 8];
    let mut last_of_month = vec![false; 8];
    let mut nth = Vec::new();
    for item in field.split(',') {
        if item == "L" {
            // Alone, `L` is the last day of the week: Saturday.
            days[7] = true;
        } else if let Some((w, k)) = item.split_once('#') {
            let k = parse_number(k).filter(|k| (1..=5).contains(k))?;
            nth.push((value(w, 1, 7, &WEEKDAYS)? as u8, k as u8));
        } else if let Some(w) = item.strip_suffix('L') {
            last_of_month[value(w, 1, 7, &WEEKDAYS)? as usize] = true;
        } else {
            add_item(item, 1, 7, &WEEKDAYS, &mut days)?;
        }
    }
    Some(Days::OfWeek {
        days,
        last_of_month,
        nth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC date and time.
    fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8) -> u64 {
        let date = Date::from_calendar_date(y, Month::try_from(mo).unwrap(), d).unwrap();
        let day = i64::from(date.to_julian_day()) - EPOCH_JULIAN;
        day as u64 * DAY_MS + u64::from(h) * 3_600_000 + u64::from(mi) * MINUTE_MS
    }

    fn next(expr: &str, after: u64) -> Option<u64> {
        Schedule::parse(expr).unwrap().next_after(0, after)
    }

    fn ticks(expr: &str, from: u64, n: usize) -> Vec<u64> {
        let s = Schedule::parse(expr).unwrap();
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = s.next_after(0, t).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn rates_count_from_when_they_were_set() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        let since = at(2026, 12, 4, 10, 2) + 17_000;
        assert_eq!(s.next_after(since, since), Some(since + 5 * MINUTE_MS));
        assert_eq!(
            s.next_after(since, since + 5 * MINUTE_MS),
            Some(since + 10 * MINUTE_MS)
        );
        assert_eq!(s.latest_at_or_before(since, since + 4 * MINUTE_MS), None);
        assert_eq!(
            s.latest_at_or_before(since, since + 23 * MINUTE_MS),
            Some(since + 20 * MINUTE_MS)
        );
        assert_eq!(
            Schedule::parse("rate(1 day)").unwrap(),
            Schedule::Rate { every_ms: DAY_MS }
        );
        assert_eq!(
            Schedule::parse("rate(2 hours)").unwrap(),
            Schedule::Rate {
                every_ms: 7_200_000
            }
        );
    }

    #[test]
    fn aws_refuses_these_and_so_do_we() {
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(1.5 hours)",
            "rate(5 seconds)",
            "rate(5  minutes)",
            "rate(5)",
            "rate 5 minutes",
            "cron(0 12 * * * *)",
            "cron(0 12 ? * ? *)",
            "cron(0 12 * *)",
            "cron(0 12 * * ? * *)",
            "cron(60 12 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 12 32 * ? *)",
            "cron(0 12 ? 13 MON *)",
            "cron(0 12 ? * 8 *)",
            "cron(0 12 ? * MON#6 *)",
            "cron(0 12 * * ? 1969)",
            "cron(0 12 * * ? 2200)",
            "cron(*/0 * * * ? *)",
            "cron(0 12 * FOO ? *)",
            "at(2026-12-04T10:00:00)",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} is refused");
        }
        assert!(Schedule::parse(&format!("cron({})", "0,".repeat(200))).is_err());
    }

    #[test]
    fn cron_fields_as_aws_documents_them() {
        let t = at(2026, 12, 4, 10, 2); // a Friday
                                        // Every day at 12:00.
        assert_eq!(next("cron(0 12 * * ? *)", t), Some(at(2026, 12, 4, 12, 0)));
        // Every 15 minutes from minute 0, and "1/10": the 11th, 21st… minute.
        assert_eq!(
            next("cron(0/15 * * * ? *)", t),
            Some(at(2026, 12, 4, 10, 15))
        );
        assert_eq!(
            ticks("cron(1/10 * * * ? *)", t, 3),
            [
                at(2026, 12, 4, 10, 11),
                at(2026, 12, 4, 10, 21),
                at(2026, 12, 4, 10, 31)
            ]
        );
        // Weekdays at 18:00 (MON-FRI), from a Friday evening: Friday then Monday.
        assert_eq!(
            ticks("cron(0 18 ? * MON-FRI *)", t, 2),
            [at(2026, 12, 4, 18, 0), at(2026, 12, 7, 18, 0)]
        );
        // Sunday is 1.
        assert_eq!(next("cron(0 8 ? * 1 *)", t), Some(at(2026, 12, 6, 8, 0)));
        // The first day of every month, and of January to March only.
        assert_eq!(next("cron(0 0 1 * ? *)", t), Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(
            ticks("cron(15 10 1 JAN-MAR ? *)", t, 4),
            [
                at(2027, 1, 1, 10, 15),
                at(2027, 2, 1, 10, 15),
                at(2027, 3, 1, 10, 15),
                at(2028, 1, 1, 10, 15)
            ]
        );
        // A range past the maximum wraps: FRI-MON is Friday to Monday.
        assert_eq!(
            ticks("cron(0 9 ? * FRI-MON *)", at(2026, 12, 4, 10, 0), 4),
            [
                at(2026, 12, 5, 9, 0),
                at(2026, 12, 6, 9, 0),
                at(2026, 12, 7, 9, 0),
                at(2026, 12, 11, 9, 0)
            ]
        );
        // A year list, and a schedule that never fires again.
        assert_eq!(
            next("cron(0 0 29 2 ? 2027,2028)", t),
            Some(at(2028, 2, 29, 0, 0))
        );
        assert_eq!(next("cron(0 0 1 1 ? 2020)", t), None);
        // The minute itself is not "after" it.
        assert_eq!(
            next("cron(* * * * ? *)", at(2026, 12, 4, 10, 2)),
            Some(at(2026, 12, 4, 10, 3))
        );
    }

    #[test]
    fn l_w_and_hash() {
        let t = at(2026, 12, 4, 10, 2);
        // L: the last day of the month (February of a leap year).
        assert_eq!(next("cron(0 0 L * ? *)", t), Some(at(2026, 12, 31, 0, 0)));
        assert_eq!(next("cron(0 0 L 2 ? *)", t), Some(at(2027, 2, 28, 0, 0)));
        assert_eq!(next("cron(0 0 L 2 ? 2028)", t), Some(at(2028, 2, 29, 0, 0)));
        // 3W: the weekday nearest the 3rd. January 2027: the 3rd is a Sunday, so Monday the 4th;
        // May 2027: the 1st is a Saturday, so 1W is Monday the 3rd (never April).
        assert_eq!(next("cron(0 0 3W 1 ? *)", t), Some(at(2027, 1, 4, 0, 0)));
        assert_eq!(next("cron(0 0 1W 5 ? *)", t), Some(at(2027, 5, 3, 0, 0)));
        // LW: the last weekday. January 2027 ends on a Sunday: Friday the 29th.
        assert_eq!(next("cron(0 0 LW 1 ? *)", t), Some(at(2027, 1, 29, 0, 0)));
        // 3#2: the second Tuesday (December 2026: the 8th).
        assert_eq!(next("cron(0 0 ? * 3#2 *)", t), Some(at(2026, 12, 8, 0, 0)));
        // 6L: the last Friday (December 2026: the 25th). L alone: Saturdays.
        assert_eq!(next("cron(0 0 ? * 6L *)", t), Some(at(2026, 12, 25, 0, 0)));
        assert_eq!(next("cron(0 0 ? * L *)", t), Some(at(2026, 12, 5, 0, 0)));
    }

    #[test]
    fn the_latest_tick_is_found_backwards() {
        let s = Schedule::parse("cron(0 12 ? * MON *)").unwrap();
        let t = at(2026, 12, 4, 10, 2);
        assert_eq!(s.latest_at_or_before(0, t), Some(at(2026, 11, 30, 12, 0)));
        assert_eq!(
            s.latest_at_or_before(0, at(2026, 11, 30, 12, 0)),
            Some(at(2026, 11, 30, 12, 0))
        );
        let yearly = Schedule::parse("cron(0 0 1 1 ? 2020-2022)").unwrap();
        assert_eq!(yearly.latest_at_or_before(0, t), Some(at(2022, 1, 1, 0, 0)));
        assert_eq!(yearly.latest_at_or_before(0, at(2019, 6, 1, 0, 0)), None);
    }
}
