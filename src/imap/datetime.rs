//! IMAP dates: `date` (SEARCH BEFORE/ON/SINCE...), `date-time` (APPEND, INTERNALDATE) and the
//! RFC 5322 `Date:` header (SEARCH SENTBEFORE/SENTON/SENTSINCE).
//!
//! IMAP's own forms are parsed strictly (apart from accepting an unpadded day everywhere);
//! message headers are parsed tolerantly with mail-parser's date parser.

use std::io::Write;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

/// Month names as IMAP writes them.
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Earliest and latest instants with a four-digit year, for [`write_date_time`].
const MIN_UNIX: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const MAX_UNIX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// Month number (1..=12) of a three-letter month name, case-insensitively.
fn month(name: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(name))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Value of a run of ASCII digits whose length is within `len`.
fn digits(bytes: &[u8], len: std::ops::RangeInclusive<usize>) -> Option<u32> {
    if !len.contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')),
    )
}

/// Parses `d-Mon-yyyy` where the day has one or two digits (`date-text` of RFC 3501). Quotes
/// must already be removed.
pub fn parse_date(s: &[u8]) -> Option<NaiveDate> {
    let mut parts = s.split(|&b| b == b'-');
    let day = digits(parts.next()?, 1..=2)?;
    let month = month(parts.next()?)?;
    let year = digits(parts.next()?, 4..=4)?;
    if parts.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// Parses `dd-Mon-yyyy hh:mm:ss +zzzz` (`date-time` of RFC 3501), where the day may also be
/// space-padded (` 1`) or a single digit. Surrounding double quotes are tolerated.
pub fn parse_date_time(s: &[u8]) -> Option<DateTime<FixedOffset>> {
    let s = s
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(s);
    let s = s.strip_prefix(b" ").unwrap_or(s);
    let mut fields = s.split(|&b| b == b' ');
    let date = parse_date(fields.next()?)?;
    let time = fields.next()?;
    let zone = fields.next()?;
    if fields.next().is_some() {
        return None;
    }

    let mut hms = time.split(|&b| b == b':');
    let hour = digits(hms.next()?, 2..=2)?;
    let minute = digits(hms.next()?, 2..=2)?;
    let second = digits(hms.next()?, 2..=2)?;
    if hms.next().is_some() {
        return None;
    }
    let time = NaiveTime::from_hms_opt(hour, minute, second)?;

    let (sign, zone_digits) = match zone.split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    let zone = digits(zone_digits, 4..=4)?;
    let (zone_hours, zone_minutes) = (zone / 100, zone % 100);
    if zone_minutes >= 60 {
        return None;
    }
    let offset_secs = i32::try_from(zone_hours * 3600 + zone_minutes * 60).ok()? * sign;
    let offset = FixedOffset::east_opt(offset_secs)?;
    offset
        .from_local_datetime(&NaiveDateTime::new(date, time))
        .single()
}

/// Writes `unix_secs` as a quoted `date-time` in UTC, e.g. `"04-Dec-2026 15:41:49 +0000"`, as
/// INTERNALDATE wants. Instants outside years 0000..=9999 are clamped to that range.
pub fn write_date_time(unix_secs: i64, out: &mut Vec<u8>) {
    let secs = unix_secs.clamp(MIN_UNIX, MAX_UNIX);
    let Some(dt) = DateTime::from_timestamp(secs, 0) else {
        // Unreachable within the clamped range; keep the output well-formed regardless.
        out.extend_from_slice(b"\"01-Jan-1970 00:00:00 +0000\"");
        return;
    };
    let naive = dt.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    use chrono::{Datelike, Timelike};
    let month = MONTHS.get(date.month0() as usize).copied().unwrap_or("Jan");
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        date.day(),
        month,
        date.year(),
        time.hour(),
        time.minute(),
        time.second()
    );
}

/// Parses the value of an RFC 5322 `Date:` header (obsolete forms, comments and folding
/// included) into a date-time in the header's own offset. `None` when no sensible date is found.
pub fn parse_rfc5322_date(header_value: &[u8]) -> Option<DateTime<FixedOffset>> {
    let HeaderValue::DateTime(dt) = MessageStream::new(header_value).parse_date() else {
        return None;
    };
    let date = NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))?;
    // A leap second is folded into the second before it.
    let time = NaiveTime::from_hms_opt(
        u32::from(dt.hour),
        u32::from(dt.minute),
        u32::from(dt.second.min(59)),
    )?;
    let offset_secs = i32::from(dt.tz_hour) * 3600 + i32::from(dt.tz_minute) * 60;
    let offset = FixedOffset::east_opt(if dt.tz_before_gmt {
        -offset_secs
    } else {
        offset_secs
    })?;
    offset
        .from_local_datetime(&NaiveDateTime::new(date, time))
        .single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date(b"1-Feb-1994"), Some(ymd(1994, 2, 1)));
        assert_eq!(parse_date(b"01-Feb-1994"), Some(ymd(1994, 2, 1)));
        assert_eq!(parse_date(b"29-fEB-2024"), Some(ymd(2024, 2, 29)));
        assert_eq!(parse_date(b"31-DEC-9999"), Some(ymd(9999, 12, 31)));
    }

    #[test]
    fn bad_dates() {
        for bad in [
            &b""[..],
            b"1-Feb",
            b"1-Feb-94",
            b"001-Feb-1994",
            b"1-Fev-1994",
            b"1-February-1994",
            b"0-Feb-1994",
            b"30-Feb-1994",
            b"29-Feb-2023",
            b"1-Feb-1994-",
            b" 1-Feb-1994",
            b"\"1-Feb-1994\"",
            b"+1-Feb-1994",
            b"1-Feb-19945",
        ] {
            assert_eq!(parse_date(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn date_times() {
        let dt = parse_date_time(b"17-Jul-1996 02:44:25 -0700").expect("valid");
        assert_eq!(dt.to_rfc3339(), "1996-07-17T02:44:25-07:00");
        assert_eq!(dt.timestamp(), 837_596_665);
        let dt = parse_date_time(b" 1-Feb-2000 00:00:00 +0130").expect("space-padded");
        assert_eq!(dt.to_rfc3339(), "2000-02-01T00:00:00+01:30");
        let dt = parse_date_time(b"1-Feb-2000 23:59:59 +0000").expect("unpadded");
        assert_eq!(dt.to_rfc3339(), "2000-02-01T23:59:59+00:00");
        assert!(parse_date_time(b"\"01-Feb-2000 00:00:00 +0000\"").is_some());
    }

    #[test]
    fn bad_date_times() {
        for bad in [
            &b""[..],
            b"17-Jul-1996",
            b"17-Jul-1996 02:44:25",
            b"17-Jul-1996 02:44 -0700",
            b"17-Jul-1996 24:00:00 -0700",
            b"17-Jul-1996 02:60:00 -0700",
            b"17-Jul-1996 02:44:61 -0700",
            b"17-Jul-1996 02:44:25 0700",
            b"17-Jul-1996 02:44:25 -070",
            b"17-Jul-1996 02:44:25 -0760",
            b"17-Jul-1996 02:44:25 -0700 x",
            b"17-Jul-1996  02:44:25 -0700",
            b"32-Jul-1996 02:44:25 -0700",
            b"17-Jul-1996 2:44:25 -0700",
            b"17-Jul-1996 02:44:25 GMT",
        ] {
            assert_eq!(
                parse_date_time(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn writes_internal_dates() {
        let w = |secs| {
            let mut out = Vec::new();
            write_date_time(secs, &mut out);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(w(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(w(837_596_665), "\"17-Jul-1996 09:44:25 +0000\"");
        assert_eq!(w(-1), "\"31-Dec-1969 23:59:59 +0000\"");
        assert_eq!(w(i64::MAX), "\"31-Dec-9999 23:59:59 +0000\"");
        assert_eq!(w(i64::MIN), "\"01-Jan-0000 00:00:00 +0000\"");
    }

    #[test]
    fn rfc5322_dates() {
        let dt = parse_rfc5322_date(b" Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n").expect("valid");
        assert_eq!(dt.to_rfc3339(), "1994-02-07T21:52:25-08:00");
        let dt = parse_rfc5322_date(b"7 Feb 94 21:52 +0100").expect("obsolete year");
        assert_eq!(dt.to_rfc3339(), "1994-02-07T21:52:00+01:00");
        let dt = parse_rfc5322_date(b"Tue, 1 Jul 2003 10:52:37 +0200").expect("valid");
        assert_eq!(dt.date_naive(), ymd(2003, 7, 1));
        assert_eq!(parse_rfc5322_date(b"yesterday"), None);
        assert_eq!(parse_rfc5322_date(b""), None);
        assert_eq!(parse_rfc5322_date(b"31 Feb 2020 10:00:00 +0000"), None);
    }

    proptest! {
        #[test]
        fn date_time_round_trips(secs in MIN_UNIX..=MAX_UNIX) {
            let mut out = Vec::new();
            write_date_time(secs, &mut out);
            let parsed = parse_date_time(&out);
            prop_assert_eq!(parsed.map(|dt| dt.timestamp()), Some(secs));
            let inner = &out[1..12];
            prop_assert!(parse_date(inner).is_some());
        }

        #[test]
        fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_date(&bytes);
            let _ = parse_date_time(&bytes);
            let _ = parse_rfc5322_date(&bytes);
        }
    }
}
