//! Wall-clock time as the daemon writes and reads it: milliseconds since the epoch inside, RFC 3339 in the
//! original's JSON and ENI tags (Go's `time.RFC3339`).

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vpcni_engine::Millis;

/// Milliseconds since the epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, second resolution, as Go's `time.RFC3339` prints UTC.
pub fn rfc3339(ms: Millis) -> String {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses RFC 3339 (`2024-01-02T03:04:05Z`, optional fraction, `Z` or `±hh:mm`, as the original's tags
/// may carry a local offset) to milliseconds since the epoch; `None` for anything else or a time before
/// the epoch.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    // The time crate also takes a space (or `t`) between date and time, as RFC 3339 §5.6 permits; Go's
    // `time.RFC3339`, which wrote these tags, does not, and neither does the leaked-ENI sweep: a createdAt
    // the original could not read is not one to delete an ENI by.
    if text.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn rfc3339_round_trips_and_reads_go_forms() {
        for ms in [0, 951_782_400_000, 1_764_000_000_000, 4_102_444_799_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2025-11-24T17:00:00+01:00"),
            Some(1_764_000_000_000)
        );
        assert_eq!(parse_rfc3339("2025-11-24T16:00:00.250Z"), Some(1_764_000_000_250));
        for bad in [
            "",
            "1764000000000",
            "2025-13-01T00:00:00Z",
            "2025-11-24 16:00:00Z",
            "2025-11-24T16:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
