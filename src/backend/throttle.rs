//! The client's own request budget, per operation kind, sized to ARM's published limits
//! (token buckets: reads 250 burst and 25 a second; writes and deletes 200 burst and 10
//! a second), and metrics for what ARM says is left and for the waits.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

pub use crate::budget::{Bucket, Limits};

/// The operation kind of a request, as ARM counts them.
pub fn kind(method: &reqwest::Method) -> &'static str {
    crate::budget::Kind::of(method).as_str()
}

/// Buckets per kind.
#[derive(Debug)]
pub struct Throttle {
    reads: Bucket,
    writes: Bucket,
    deletes: Bucket,
    /// Whose turn it is, per kind: a fair queue, so that waiting requests go in the order
    /// they asked, each taking its token when it is sent (a token reserved ahead and sent
    /// late would let the next ones bunch up behind it).
    turns: [tokio::sync::Mutex<()>; 3],
}

impl Throttle {
    /// Buckets sized by `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            reads: Bucket::new(limits.reads.0, limits.reads.1),
            writes: Bucket::new(limits.writes.0, limits.writes.1),
            deletes: Bucket::new(limits.deletes.0, limits.deletes.1),
            turns: Default::default(),
        }
    }

    fn bucket(&self, kind: &str) -> &Bucket {
        match kind {
            "reads" => &self.reads,
            "deletes" => &self.deletes,
            _ => &self.writes,
        }
    }

    /// Takes a token for a request of this kind, waiting its turn behind the requests that
    /// asked before; returns how long it waited. A wait longer than `max_wait` gives up,
    /// saying how long the next token still is.
    pub async fn take(&self, kind: &str, max_wait: Duration) -> Result<Duration, Duration> {
        let bucket = self.bucket(kind);
        let turn = &self.turns[match kind {
            "reads" => 0,
            "deletes" => 1,
            _ => 2,
        }];
        let started = Instant::now();
        // Whether it waited for the budget (its turn, or a token), not how long it took:
        // on a loaded machine a request that found a token at once still takes a while,
        // and was counted as throttled.
        let wait = async {
            let mut waited = false;
            let _turn = match turn.try_lock() {
                Ok(t) => t,
                Err(_) => {
                    waited = true;
                    turn.lock().await
                }
            };
            while let Err(wait) = bucket.try_take_at(Instant::now()) {
                waited = true;
                tokio::time::sleep(wait).await;
            }
            waited
        };
        match tokio::time::timeout(max_wait, wait).await {
            Ok(false) => Ok(Duration::ZERO),
            Ok(true) => Ok(started.elapsed().max(Duration::from_millis(1))),
            Err(_) => Err(bucket
                .try_take_at(Instant::now())
                .err()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1))),
        }
    }

    /// Takes in ARM's `x-ms-ratelimit-remaining-subscription-*` for this kind.
    pub fn server_left(&self, kind: &str, left: i64) {
        self.bucket(kind).at_most_at(left as f64, Instant::now());
    }

    /// Takes in a 429 whose `Retry-After` said `wait`.
    pub fn server_refused(&self, kind: &str, wait: Duration) {
        self.bucket(kind).refused_at(wait, Instant::now());
    }
}

/// Labels: the operation kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `reads`, `writes` or `deletes`.
    pub kind: String,
    /// The backend target: `operator` (the flags'), or a BackendTarget's `namespace/name`.
    pub target: String,
}

/// Labels: who made a request wait.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    /// `client` (our budget) or `server` (ARM's 429 or 503 with Retry-After).
    pub source: String,
    /// The backend target.
    pub target: String,
}

/// The ARM client's metrics.
/// Labels of a backend request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The HTTP method.
    pub method: String,
    /// The resource types on the path, and the action if any, as [`operation`] names them.
    pub operation: String,
    /// The HTTP status code answered, or `error` when no answer came.
    pub status: String,
    /// The backend target.
    pub target: String,
}

/// Names a request's operation by the resource types on its path, without names or ids:
/// `hostPools/msixPackages` for `.../hostPools/hp1/msixPackages/x`, `appAttachPackages` for
/// a list of them, `hostPools/sessionHosts/userSessions/sendMessage` for an action. So the
/// metric has a few series, whatever the estate's size.
pub fn operation(path_or_url: &str) -> String {
    let path = path_or_url
        .split_once("://")
        .map_or(path_or_url, |(_, rest)| {
            rest.find('/').map_or("", |i| &rest[i..])
        });
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // After the last `providers/<namespace>`: type, name, type, name, ... [, type or action].
    let Some(at) = segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    else {
        return "other".into();
    };
    let types: Vec<&str> = segments.iter().skip(at + 2).step_by(2).copied().collect();
    if types.is_empty() {
        "other".into()
    } else {
        types.join("/")
    }
}

#[derive(Debug, Clone, Default)]
pub struct ArmMetrics {
    /// `x-ms-ratelimit-remaining-subscription-*`, as last answered.
    pub remaining: Family<KindLabels, Gauge>,
    /// Requests held back.
    pub throttled: Family<WaitLabels, Counter>,
    /// Seconds asked to wait.
    pub wait_seconds: Family<WaitLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Requests sent, by method, operation and status.
    pub requests: Family<RequestLabels, Counter>,
    /// The target these requests go to, in every label set (`operator` when empty).
    pub target: String,
}

impl ArmMetrics {
    /// The same families, labelled with another target.
    pub fn for_target(&self, target: &str) -> Self {
        Self {
            target: target.to_string(),
            ..self.clone()
        }
    }

    /// The target label.
    pub fn target(&self) -> String {
        if self.target.is_empty() {
            "operator".into()
        } else {
            self.target.clone()
        }
    }

    /// Records a wait.
    pub fn waited(&self, source: &str, d: Duration) {
        let l = WaitLabels {
            source: source.into(),
            target: self.target(),
        };
        self.throttled.get_or_create(&l).inc();
        self.wait_seconds.get_or_create(&l).inc_by(d.as_secs_f64());
    }

    /// Records a request sent and how it was answered (`None`: no answer came).
    pub fn requested(&self, method: &reqwest::Method, path_or_url: &str, status: Option<u16>) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                operation: operation(path_or_url),
                status: status.map_or_else(|| "error".to_string(), |s| s.to_string()),
                target: self.target(),
            })
            .inc();
    }

    /// Registers them.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "arm_ratelimit_remaining",
            "Requests ARM says are left, from its x-ms-ratelimit-remaining-subscription-* headers",
            self.remaining.clone(),
        );
        registry.register(
            "arm_throttled",
            "ARM requests held back, by who asked: the client's budget or ARM",
            self.throttled.clone(),
        );
        registry.register(
            "arm_requests",
            "Requests sent to the management backend, by method, operation and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "arm_wait_seconds",
            "Seconds ARM requests were asked to wait",
            self.wait_seconds.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_names_resource_types_not_resources() {
        let rg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DesktopVirtualization";
        for (path, want) in [
            (
                format!("{rg}/appAttachPackages?api-version=2024-04-03"),
                "appAttachPackages",
            ),
            (format!("{rg}/appAttachPackages/app-1"), "appAttachPackages"),
            (
                format!("{rg}/hostPools/hp/msixPackages/A_1.0_x64__p"),
                "hostPools/msixPackages",
            ),
            (
                format!("{rg}/hostPools/hp/msixPackages"),
                "hostPools/msixPackages",
            ),
            (
                format!("{rg}/hostPools/hp/sessionHosts/h1/userSessions/3/sendMessage"),
                "hostPools/sessionHosts/userSessions/sendMessage",
            ),
            (
                format!("https://management.azure.com{rg}/hostPools?api-version=x&$skipToken=y"),
                "hostPools",
            ),
            (
                format!(
                    "{rg}/applicationGroups/ag/providers/Microsoft.Authorization/roleAssignments/0b1c"
                ),
                "roleAssignments",
            ),
            ("/subscriptions/s".to_string(), "other"),
            ("".to_string(), "other"),
        ] {
            assert_eq!(operation(&path), want, "{path}");
        }
    }
}
