//! Human-readable units in config files: durations (`"250ms"`, `"10s"`),
//! sizes (`"256MiB"`), and rates (`"100/s"`).
//!
//! Each type parses from a string (and sizes also from a bare integer of
//! bytes) and reports what it expected in its error, so `check` can say
//! exactly what is wrong with a value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written as `"250ms"`, `"10s"`, `"2m"`, `"1h 30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// Seconds as a duration; a shorthand for defaults.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// Milliseconds as a duration; a shorthand for defaults.
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            format!("invalid duration {s:?} ({e}); expected e.g. \"250ms\", \"10s\", \"5m\"")
        })
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A size in bytes written as `"256MiB"`, `"64KiB"`, `"10MB"`, `"512"` or a bare integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || {
            format!("invalid size {s:?}; expected e.g. \"512\", \"64KiB\", \"256MiB\", \"1GiB\"")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

/// A rate written as `"100/s"`, `"6000/m"`, `"10/5s"`: `count` events per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Events allowed per period; at least 1.
    pub count: u32,
    /// The period; longer than zero.
    pub per: Duration,
}

impl Rate {
    /// The steady-state spacing between two allowed events (GCRA's emission interval).
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!("invalid rate {s:?} ({why}); expected e.g. \"100/s\", \"6000/m\", \"10/5s\"")
        };
        let (count, per) = s.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("count is not a whole number"))?;
        if count == 0 {
            return Err(bad("count must be at least 1"));
        }
        let per = per.trim();
        let per = match per {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad("unknown period"))?,
        };
        if per.is_zero() {
            return Err(bad("period must be longer than zero"));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!("250ms".parse::<Dur>().unwrap(), Dur::millis(250));
        assert_eq!("10s".parse::<Dur>().unwrap(), Dur::secs(10));
        assert!("ten".parse::<Dur>().is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!("256MiB".parse::<ByteSize>().unwrap(), ByteSize(256 << 20));
        assert_eq!("10KB".parse::<ByteSize>().unwrap(), ByteSize(10_000));
        assert_eq!("77".parse::<ByteSize>().unwrap(), ByteSize(77));
        assert!("12XB".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn parses_rates() {
        let r: Rate = "100/s".parse().unwrap();
        assert_eq!((r.count, r.per), (100, Duration::from_secs(1)));
        assert_eq!(r.interval(), Duration::from_millis(10));
        let r: Rate = "10/5s".parse().unwrap();
        assert_eq!(r.per, Duration::from_secs(5));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("100".parse::<Rate>().is_err());
        assert!("5/fortnight".parse::<Rate>().is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn dur_unit() -> impl Strategy<Value = (&'static str, u64)> {
            prop::sample::select(vec![
                ("ms", 1),
                ("s", 1_000),
                ("m", 60_000),
                ("h", 3_600_000),
            ])
        }

        fn size_unit() -> impl Strategy<Value = (&'static str, u64)> {
            prop::sample::select(vec![
                ("", 1),
                ("B", 1),
                ("KB", 1_000),
                ("kB", 1_000),
                ("KiB", 1 << 10),
                ("MB", 1_000_000),
                ("MiB", 1 << 20),
                ("GB", 1_000_000_000),
                ("GiB", 1 << 30),
            ])
        }

        fn rate_unit() -> impl Strategy<Value = (&'static str, u64)> {
            prop::sample::select(vec![
                ("s", 1),
                ("sec", 1),
                ("m", 60),
                ("min", 60),
                ("h", 3_600),
                ("d", 86_400),
                ("5s", 5),
                ("30s", 30),
                ("2m", 120),
            ])
        }

        proptest! {
            #[test]
            fn durations_parse_and_round_trip(n in 0u64..1_000_000, (unit, ms) in dur_unit()) {
                let d: Dur = format!("{n}{unit}").parse().unwrap();
                prop_assert_eq!(d, Dur(Duration::from_millis(n * ms)));
                prop_assert_eq!(d.to_string().parse::<Dur>().unwrap(), d);
            }

            #[test]
            fn sizes_parse_and_round_trip(n in 0u64..1_000_000, (unit, mult) in size_unit()) {
                let s: ByteSize = format!("{n}{unit}").parse().unwrap();
                prop_assert_eq!(s, ByteSize(n * mult));
                prop_assert_eq!(s.to_string().parse::<ByteSize>().unwrap(), s);
            }

            #[test]
            fn rates_parse_and_round_trip(count in 1u32..1_000_000, (unit, secs) in rate_unit()) {
                let r: Rate = format!("{count}/{unit}").parse().unwrap();
                prop_assert_eq!(r.count, count);
                prop_assert_eq!(r.per, Duration::from_secs(secs));
                prop_assert_eq!(r.to_string().parse::<Rate>().unwrap(), r);
            }

            #[test]
            fn bad_durations_are_refused(s in "[0-9]{0,6}[qxzQXZ]{1,3}|-[0-9]{1,4}s|[a-z]{1,5}") {
                prop_assert!(s.parse::<Dur>().is_err());
            }

            #[test]
            fn bad_sizes_are_refused(
                n in 0u64..1_000_000,
                unit in prop::sample::select(vec!["XB", "kb", "Kib", "mb", "TiB", "G", "K", "bytes", " M"]),
            ) {
                let s = format!("{n}{unit}");
                prop_assert!(s.parse::<ByteSize>().is_err(), "accepted {:?}", s);
                let s = format!("-{n}{unit}");
                prop_assert!(s.parse::<ByteSize>().is_err(), "accepted {:?}", s);
            }

            #[test]
            fn oversized_sizes_are_refused(n in (u64::MAX >> 30) + 1..u64::MAX) {
                let s = format!("{n}GiB");
                prop_assert!(s.parse::<ByteSize>().is_err(), "accepted {:?}", s);
            }

            #[test]
            fn bad_rates_are_refused(
                count in 0u32..1_000,
                per in prop::sample::select(vec!["", "fortnight", "0s", "x", "-1s"]),
            ) {
                let s = format!("{count}/{per}");
                prop_assert!(s.parse::<Rate>().is_err(), "accepted {:?}", s);
                let s = format!("0/{per}");
                prop_assert!(s.parse::<Rate>().is_err(), "accepted {:?}", s);
                let s = count.to_string();
                prop_assert!(s.parse::<Rate>().is_err(), "accepted {:?}", s);
            }
        }
    }
}
