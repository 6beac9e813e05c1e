//! Switchable faults and request counts, for tests of retries, backoff and "zero writes in
//! steady state".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One fault rule: which requests it matches and what it does to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// Matches paths containing this text (case-insensitive); absent matches every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// Matches this HTTP method only; absent matches every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Status to answer instead of serving the request (429, 500, 503, ...). Absent: the
    /// request is served, after the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The ARM error code of the answer (for example `AuthorizationFailed`); a generic
    /// one for the status when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The error message of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Retry-After` seconds sent with a 429 or 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Delay before answering, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Delay after serving the request (a write has taken effect), before answering, in
    /// milliseconds: a caller stopped meanwhile never learns that its write was applied.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_after_ms: u64,
    /// Fire on the next `count` matching requests, then retire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Fire on this fraction (0 to 1) of matching requests, chosen by a seeded generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Seed of the generator for `fraction`.
    #[serde(default)]
    pub seed: u64,
}

/// What a fired rule does.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Status to answer, if any.
    pub status: Option<u16>,
    /// Error code and message to answer with.
    pub error: Option<(String, String)>,
    /// Retry-After seconds.
    pub retry_after_seconds: Option<u64>,
    /// Delay in milliseconds.
    pub delay_ms: u64,
    /// Delay after serving, in milliseconds.
    pub delay_after_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

struct Armed {
    rule: FaultRule,
    rng: u64,
}

/// The active fault rules.
#[derive(Default)]
pub struct Faults {
    rules: Vec<Armed>,
}

impl Faults {
    /// Adds a rule; refuses one that could never fire.
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        if rule.count.is_some() == rule.fraction.is_some() {
            return Err(
                "a fault rule needs exactly one of count (next N requests) or fraction (0 to 1)"
                    .into(),
            );
        }
        if let Some(f) = rule.fraction
            && !(0.0..=1.0).contains(&f)
        {
            return Err(format!("fraction must be between 0 and 1, got {f}"));
        }
        if rule.status.is_none() && rule.delay_ms == 0 && rule.delay_after_ms == 0 {
            return Err("a fault rule needs a status, a delayMs or a delayAfterMs (or a status and a delayMs)".into());
        }
        if rule.status.is_some() && rule.delay_after_ms > 0 {
            return Err(
                "delayAfterMs delays the answer of a request that was served; with a status the request is not served"
                    .into(),
            );
        }
        let rng = rule.seed ^ 0x9E37_79B9_7F4A_7C15;
        self.rules.push(Armed { rule, rng });
        Ok(())
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|a| a.rule.clone()).collect()
    }

    /// The fault for this request, if a rule fires.
    pub fn check(&mut self, method: &str, path: &str) -> Option<Fault> {
        let path = path.to_ascii_lowercase();
        let mut fired = None;
        for armed in &mut self.rules {
            let r = &armed.rule;
            let matches = r
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path_contains
                    .as_ref()
                    .is_none_or(|p| path.contains(&p.to_ascii_lowercase()));
            if !matches {
                continue;
            }
            let fire = match (&mut armed.rule.count, armed.rule.fraction) {
                (Some(n), _) if *n > 0 => {
                    *n -= 1;
                    true
                }
                (Some(_), _) => false,
                (None, Some(f)) => next_unit(&mut armed.rng) < f,
                (None, None) => false,
            };
            if fire {
                let r = &armed.rule;
                fired = Some(Fault {
                    status: r.status,
                    error: r.code.clone().map(|c| {
                        (
                            c,
                            r.message
                                .clone()
                                .unwrap_or_else(|| "Emulated fault.".into()),
                        )
                    }),
                    retry_after_seconds: r.retry_after_seconds,
                    delay_ms: r.delay_ms,
                    delay_after_ms: r.delay_after_ms,
                });
                break;
            }
        }
        self.rules.retain(|a| a.rule.count != Some(0));
        fired
    }
}

/// splitmix64, mapped to [0, 1): small, seeded and reproducible.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Requests served, by method and path.
#[derive(Default)]
pub struct Counts {
    by_request: BTreeMap<(String, String), u64>,
    applied: BTreeMap<(String, String), u64>,
    log: std::collections::VecDeque<LoggedRequest>,
    per_kind: BTreeMap<&'static str, u64>,
    refused: KindCounts,
}

/// One request in the log, with when it was answered and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// When it was answered (RFC 3339, milliseconds).
    pub at: String,
    /// HTTP method.
    pub method: String,
    /// Path, lowercased.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// The caller's `User-Agent`, which names the controller replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// How many requests the log keeps.
const LOG: usize = 20_000;

/// The hourly budget ARM states in its `x-ms-ratelimit-remaining-subscription-*` headers.
const HOURLY: u64 = 12_000;

/// A snapshot of the counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountsView {
    /// All requests.
    pub total: u64,
    /// Requests that change something: PUT, PATCH, DELETE, POST.
    pub writes: u64,
    /// By method.
    pub by_method: BTreeMap<String, u64>,
    /// By method and path.
    pub by_path: Vec<PathCount>,
    /// Writes that took effect (answered 2xx), by method and path: a write refused by a
    /// fault, or by validation, is in `byPath` but not here.
    pub applied: Vec<PathCount>,
    /// Requests the request budget (`--arm-budget`) refused with 429, by kind; all zero
    /// when there is none. They are in `total`, `byMethod` and `byPath` too.
    #[serde(default)]
    pub budget_refused: KindCounts,
}

/// A count per operation kind, as ARM's budget counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct KindCounts {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
}

/// Requests to one path with one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PathCount {
    pub method: String,
    pub path: String,
    pub count: u64,
}

impl Counts {
    /// Counts one request.
    pub fn record(&mut self, method: &str, path: &str) {
        *self
            .by_request
            .entry((method.to_string(), path.to_ascii_lowercase()))
            .or_default() += 1;
    }

    /// Counts one request the budget refused (it is counted by [`Self::record`] too).
    pub fn record_refused(&mut self, kind: crate::budget::Kind) {
        let n = match kind {
            crate::budget::Kind::Reads => &mut self.refused.reads,
            crate::budget::Kind::Writes => &mut self.refused.writes,
            crate::budget::Kind::Deletes => &mut self.refused.deletes,
        };
        *n += 1;
    }

    /// Counts one write that took effect.
    pub fn record_applied(&mut self, method: &str, path: &str) {
        *self
            .applied
            .entry((method.to_string(), path.to_ascii_lowercase()))
            .or_default() += 1;
    }

    /// Logs an answered request; returns the rate-limit header ARM would send with it
    /// and its value (the requests of that kind left this hour, as the emulator counts).
    pub fn log(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        user_agent: Option<String>,
    ) -> (&'static str, u64) {
        if self.log.len() == LOG {
            self.log.pop_front();
        }
        self.log.push_back(LoggedRequest {
            at: super::now(),
            method: method.to_string(),
            path: path.to_ascii_lowercase(),
            status,
            user_agent,
        });
        let kind = match method {
            "GET" => "x-ms-ratelimit-remaining-subscription-reads",
            "DELETE" => "x-ms-ratelimit-remaining-subscription-deletes",
            _ => "x-ms-ratelimit-remaining-subscription-writes",
        };
        let used = self.per_kind.entry(kind).or_default();
        *used += 1;
        (kind, HOURLY.saturating_sub(*used))
    }

    /// The last requests answered, oldest first.
    pub fn logged(&self) -> Vec<LoggedRequest> {
        self.log.iter().cloned().collect()
    }

    /// Forgets every count.
    pub fn reset(&mut self) {
        self.by_request.clear();
        self.applied.clear();
        self.log.clear();
        self.per_kind.clear();
        self.refused = KindCounts::default();
    }

    /// The counts so far.
    pub fn view(&self) -> CountsView {
        let mut v = CountsView::default();
        for ((method, path), n) in &self.by_request {
            v.total += n;
            if method != "GET" {
                v.writes += n;
            }
            *v.by_method.entry(method.clone()).or_default() += n;
            v.by_path.push(PathCount {
                method: method.clone(),
                path: path.clone(),
                count: *n,
            });
        }
        v.applied = self
            .applied
            .iter()
            .map(|((method, path), n)| PathCount {
                method: method.clone(),
                path: path.clone(),
                count: *n,
            })
            .collect();
        v.budget_refused = self.refused;
        v
    }
}

/// One write the emulator applied, in the order it applied them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedWrite {
    /// Its place in the order of writes (from 1, never reused while the emulator runs).
    pub seq: u64,
    /// When it took effect (RFC 3339, milliseconds).
    pub at: String,
    /// HTTP method: PUT, PATCH, DELETE or POST.
    pub method: String,
    /// Path, lowercased, without the query.
    pub path: String,
    /// The status answered (2xx).
    pub status: u16,
    /// The request body as sent, as JSON; null when there was none (a body that is not
    /// JSON is kept as a string).
    pub body: serde_json::Value,
    /// The object id (`oid`) of the principal whose bearer token the request carried;
    /// absent when it carried none that reads as a JWT with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// The ARM writes that took effect, oldest first, with their bodies: what a test replays
/// to know what the backend held after each write. Kept apart from the request counts,
/// whose reset does not clear it. Bodies are kept as compact JSON text (a parsed value
/// takes several times the memory), and parsed again when the log is read.
#[derive(Default)]
pub struct WriteLog {
    writes: std::collections::VecDeque<(AppliedWrite, Option<Box<str>>)>,
    next: u64,
}

/// How many writes the write log keeps (the oldest go first).
pub const WRITES: usize = 10_000;

impl WriteLog {
    /// Logs a write that took effect, made by `principal` (an object id) if known.
    pub fn record(
        &mut self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
        principal: Option<&str>,
    ) {
        if self.writes.len() == WRITES {
            self.writes.pop_front();
        }
        self.next += 1;
        let text = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let value = serde_json::from_slice(body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
            });
            Some(value.to_string().into_boxed_str())
        };
        let write = AppliedWrite {
            seq: self.next,
            at: super::now(),
            method: method.to_string(),
            path: path.to_ascii_lowercase(),
            status,
            body: serde_json::Value::Null,
            principal: principal.map(String::from),
        };
        self.writes.push_back((write, text));
    }

    /// The writes kept, oldest first.
    pub fn writes(&self) -> Vec<AppliedWrite> {
        self.writes
            .iter()
            .map(|(w, text)| AppliedWrite {
                body: text.as_deref().map_or(serde_json::Value::Null, |t| {
                    serde_json::from_str(t).expect("kept as JSON")
                }),
                ..w.clone()
            })
            .collect()
    }

    /// The sequence number of the last write logged (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.next
    }

    /// Forgets the writes logged so far (the sequence goes on).
    pub fn clear(&mut self) {
        self.writes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(count: Option<u64>, fraction: Option<f64>) -> FaultRule {
        FaultRule {
            path_contains: Some("appAttachPackages".into()),
            method: None,
            status: Some(429),
            code: None,
            message: None,
            retry_after_seconds: Some(1),
            delay_ms: 0,
            delay_after_ms: 0,
            count,
            fraction,
            seed: 7,
        }
    }

    #[test]
    fn count_rules_fire_n_times_then_retire() {
        let mut f = Faults::default();
        f.add(rule(Some(2), None)).unwrap();
        assert!(f.check("GET", "/x/appattachpackages/a").is_some());
        assert!(f.check("GET", "/x/hostpools/a").is_none());
        assert!(f.check("PUT", "/x/appattachpackages/a").is_some());
        assert!(f.check("GET", "/x/appattachpackages/a").is_none());
        assert!(f.rules().is_empty());
    }

    #[test]
    fn fraction_rules_are_reproducible_and_near_their_fraction() {
        let run = || {
            let mut f = Faults::default();
            f.add(rule(None, Some(0.3))).unwrap();
            (0..1000)
                .filter(|_| f.check("GET", "/appattachpackages").is_some())
                .count()
        };
        let fired = run();
        assert_eq!(fired, run());
        assert!((250..350).contains(&fired), "{fired}");
    }

    #[test]
    fn the_write_log_keeps_the_last_writes_in_order_with_their_bodies() {
        let mut log = WriteLog::default();
        for i in 0..WRITES + 2 {
            log.record(
                "PUT",
                &format!("/X/{i}"),
                200,
                format!("{{\"n\":{i}}}").as_bytes(),
                None,
            );
        }
        log.record("DELETE", "/x/last", 200, b"", Some("oid-1"));
        let w = log.writes();
        assert_eq!(w.len(), WRITES);
        assert_eq!(w[0].path, "/x/3");
        assert_eq!(w[0].seq, 4);
        assert_eq!(w[0].body, serde_json::json!({"n": 3}));
        let last = w.last().unwrap();
        assert_eq!(
            (last.method.as_str(), last.seq),
            ("DELETE", WRITES as u64 + 3)
        );
        assert!(last.body.is_null());
        assert_eq!(last.principal.as_deref(), Some("oid-1"));
        assert_eq!(w[0].principal, None);
        let json = serde_json::to_value(&w[0]).unwrap();
        assert!(json.get("principal").is_none(), "absent, not null: {json}");
        assert_eq!(serde_json::to_value(last).unwrap()["principal"], "oid-1");
        log.clear();
        assert!(log.writes().is_empty());
        log.record("POST", "/y", 200, b"not json", None);
        assert_eq!(log.writes()[0].seq, WRITES as u64 + 4);
        assert_eq!(log.writes()[0].body, serde_json::json!("not json"));
    }

    #[test]
    fn the_budgets_refusals_are_counted_by_kind_until_a_reset() {
        use crate::budget::Kind;
        let mut c = Counts::default();
        assert_eq!(c.view().budget_refused, KindCounts::default());
        for kind in [Kind::Reads, Kind::Reads, Kind::Deletes] {
            c.record("GET", "/x");
            c.record_refused(kind);
        }
        let v = c.view();
        assert_eq!(
            (v.total, v.budget_refused),
            (
                3,
                KindCounts {
                    reads: 2,
                    writes: 0,
                    deletes: 1
                }
            )
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["budgetRefused"],
            serde_json::json!({"reads": 2, "writes": 0, "deletes": 1})
        );
        // What an emulator without the field sends still reads.
        let mut old = json;
        old.as_object_mut().unwrap().remove("budgetRefused");
        let read: CountsView = serde_json::from_value(old).unwrap();
        assert_eq!(read.budget_refused, KindCounts::default());
        c.reset();
        assert_eq!(c.view().budget_refused, KindCounts::default());
    }

    #[test]
    fn rules_that_cannot_fire_are_refused() {
        let mut f = Faults::default();
        assert!(f.add(rule(None, None)).is_err());
        assert!(f.add(rule(Some(1), Some(0.5))).is_err());
        assert!(f.add(rule(None, Some(1.5))).is_err());
        let mut after = rule(Some(1), None);
        after.delay_after_ms = 10;
        assert!(
            f.add(after.clone()).is_err(),
            "a refused request is not served"
        );
        after.status = None;
        assert!(f.add(after).is_ok());
    }
}
