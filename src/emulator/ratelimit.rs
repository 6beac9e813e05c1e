//! ARM's request budget, enforced on the emulator's callers when asked
//! ([`super::Config::arm_budget`], `appattach emulator --arm-budget`).
//!
//! As Azure Resource Manager does: a token bucket per caller and operation kind (reads;
//! writes, that is PUT, PATCH and POST; deletes), each starting full. A request with no
//! token left is refused with 429 `TooManyRequests` and a `Retry-After` of the whole
//! seconds until the next token (at least 1), is not served, and takes no token. Every
//! answer says in `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` how many
//! whole tokens of its kind the caller has left. Only ARM requests count; the emulator's
//! own `/_emulator/` routes do not.
//!
//! Who the caller is ([`caller`]): the subject of the bearer token when there is one (the
//! `sub` claim of a JWT; any other token stands for itself, so with the emulator's static
//! `--token` every caller shares one budget), else the `User-Agent` (the controller names
//! its replica there), else `anonymous`. The emulator serves one subscription, so unlike
//! ARM it does not key the buckets by subscription as well.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::arm::ArmError;
use crate::budget::{Bucket, Kind, Limits};

/// The buckets of every caller seen so far.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    callers: HashMap<String, [Bucket; 3]>,
}

/// What the budget says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Served; the caller has `remaining` whole tokens of the request's kind left.
    Admitted {
        /// Tokens left after this request, floored.
        remaining: u64,
    },
    /// Refused with 429: the next token is there in `retry_after` seconds (rounded up, at
    /// least 1).
    Refused {
        /// Seconds until a token is there.
        retry_after: u64,
    },
}

impl Admission {
    /// What the remaining-requests header says: the tokens left, none when refused.
    pub fn remaining(self) -> u64 {
        match self {
            Self::Admitted { remaining } => remaining,
            Self::Refused { .. } => 0,
        }
    }
}

impl Limiter {
    /// No caller seen yet; each gets full buckets sized by `limits` when first seen.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            callers: HashMap::new(),
        }
    }

    /// The budget enforced.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes a token from `caller`'s bucket of `kind` at `now`, or says when to retry.
    pub fn admit(&mut self, caller: &str, kind: Kind, now: Instant) -> Admission {
        let limits = self.limits;
        let buckets = self.callers.entry(caller.to_string()).or_insert_with(|| {
            [Kind::Reads, Kind::Writes, Kind::Deletes].map(|k| {
                let (burst, rate) = limits.of(k);
                Bucket::new_at(burst, rate, now)
            })
        });
        let bucket = match kind {
            Kind::Reads => &buckets[0],
            Kind::Writes => &buckets[1],
            Kind::Deletes => &buckets[2],
        };
        match bucket.try_take_at(now) {
            Ok(left) => Admission::Admitted {
                remaining: left.floor() as u64,
            },
            Err(wait) => Admission::Refused {
                retry_after: whole_seconds(wait),
            },
        }
    }
}

/// A wait in whole seconds, rounded up, at least 1: what `Retry-After` says.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Who a request is from, for the budget: see the module's documentation.
pub fn caller(headers: &HeaderMap) -> String {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(token) = text(header::AUTHORIZATION)
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return match subject(token) {
            Some(sub) => format!("sub:{sub}"),
            None => format!("token:{token}"),
        };
    }
    match text(header::USER_AGENT).filter(|a| !a.trim().is_empty()) {
        Some(agent) => format!("agent:{agent}"),
        None => "anonymous".to_string(),
    }
}

/// The `sub` claim of a JWT (not verified: the emulator only tells callers apart).
fn subject(token: &str) -> Option<String> {
    let claims = super::entra::claims(token).ok()?;
    super::entra::text(&claims, "sub").map(String::from)
}

/// The 429 ARM answers when a caller's budget of `kind` is spent.
pub fn too_many_requests(kind: Kind, limits: Limits, retry_after: u64) -> Response {
    let (burst, rate) = limits.of(kind);
    let e = ArmError::new(
        429,
        "TooManyRequests",
        format!(
            "Number of '{}' requests for this subscription and caller exceeded the budget of {burst} at once and {rate} a second. Please try again after '{retry_after}' seconds. See https://aka.ms/arm-throttling (emulated).",
            kind.as_str()
        ),
    );
    let mut response = (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        axum::Json(e.body()),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after.into());
    response
}

/// Says on `response` how many requests of `kind` are left.
pub fn set_remaining(response: &mut Response, kind: Kind, remaining: u64) {
    response.headers_mut().insert(
        axum::http::HeaderName::from_static(kind.remaining_header()),
        remaining.into(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const SMALL: Limits = Limits {
        reads: (5, 1.0),
        writes: (2, 0.5),
        deletes: (1, 0.25),
    };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_caller_gets_its_burst_counting_down_then_a_retry_after() {
        let t0 = Instant::now();
        let mut l = Limiter::new(SMALL);
        let left: Vec<u64> = (0..5)
            .map(|i| l.admit("a", Kind::Reads, t0 + secs(0.001 * f64::from(i))))
            .map(Admission::remaining)
            .collect();
        assert_eq!(left, [4, 3, 2, 1, 0]);
        // 5 ms after a full burst: 0.005 of a token, the next one in 0.995 s.
        assert_eq!(
            l.admit("a", Kind::Reads, t0 + secs(0.005)),
            Admission::Refused { retry_after: 1 }
        );
        // A refusal took nothing: the token is there a second after the burst began.
        assert_eq!(
            l.admit("a", Kind::Reads, t0 + secs(1.0)),
            Admission::Admitted { remaining: 0 }
        );
        // Long idle: full again, never more than the burst.
        assert_eq!(
            l.admit("a", Kind::Reads, t0 + secs(3600.0)),
            Admission::Admitted { remaining: 4 }
        );
    }

    #[test]
    fn retry_after_is_the_wait_for_a_token_in_whole_seconds_rounded_up() {
        let t0 = Instant::now();
        let mut l = Limiter::new(SMALL);
        // Deletes: one at once, one every 4 s.
        assert_eq!(l.admit("a", Kind::Deletes, t0).remaining(), 0);
        assert_eq!(
            l.admit("a", Kind::Deletes, t0),
            Admission::Refused { retry_after: 4 }
        );
        assert_eq!(
            l.admit("a", Kind::Deletes, t0 + secs(1.5)),
            Admission::Refused { retry_after: 3 }
        );
        assert_eq!(
            l.admit("a", Kind::Deletes, t0 + secs(3.999)),
            Admission::Refused { retry_after: 1 }
        );
        assert_eq!(
            l.admit("a", Kind::Deletes, t0 + secs(4.0)),
            Admission::Admitted { remaining: 0 }
        );
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn kinds_and_callers_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut l = Limiter::new(SMALL);
        for _ in 0..5 {
            l.admit("a", Kind::Reads, t0);
        }
        assert!(matches!(
            l.admit("a", Kind::Reads, t0),
            Admission::Refused { .. }
        ));
        assert_eq!(
            l.admit("a", Kind::Writes, t0),
            Admission::Admitted { remaining: 1 }
        );
        assert_eq!(
            l.admit("a", Kind::Deletes, t0),
            Admission::Admitted { remaining: 0 }
        );
        assert_eq!(
            l.admit("b", Kind::Reads, t0),
            Admission::Admitted { remaining: 4 }
        );
        // Writes: two at once, then one every 2 s.
        assert_eq!(
            l.admit("a", Kind::Writes, t0),
            Admission::Admitted { remaining: 0 }
        );
        assert_eq!(
            l.admit("a", Kind::Writes, t0 + secs(0.5)),
            Admission::Refused { retry_after: 2 }
        );
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn the_caller_is_the_token_subject_else_the_user_agent_else_anonymous() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = |sub: &str| {
            format!(
                "{}.{}.sig",
                b64(serde_json::json!({"alg": "RS256"})),
                b64(serde_json::json!({"sub": sub, "oid": "x"}))
            )
        };
        let agent = (header::USER_AGENT, "appattach-operator/0.1.0 (replica-a)");
        assert_eq!(
            caller(&headers(&[
                (header::AUTHORIZATION, &format!("Bearer {}", jwt("spn-1"))),
                agent.clone()
            ])),
            "sub:spn-1"
        );
        assert_eq!(
            caller(&headers(&[
                (header::AUTHORIZATION, "Bearer static-token"),
                agent.clone()
            ])),
            "token:static-token"
        );
        assert_eq!(
            caller(&headers(std::slice::from_ref(&agent))),
            "agent:appattach-operator/0.1.0 (replica-a)"
        );
        assert_eq!(caller(&HeaderMap::new()), "anonymous");
    }

    #[tokio::test]
    async fn a_refusal_is_arms_429_with_retry_after_and_what_is_left() {
        let mut r = too_many_requests(Kind::Writes, SMALL, 2);
        set_remaining(&mut r, Kind::Writes, 0);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            r.headers()["x-ms-ratelimit-remaining-subscription-writes"],
            "0"
        );
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "TooManyRequests");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'writes' requests"),
            "{body}"
        );
    }
}
