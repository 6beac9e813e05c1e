//! Keeps the shared picture of the backend fresh: one refresh at start (retried until it
//! succeeds: no pass decides before it; a pass meanwhile reports why it waits), then one
//! every `backend_refresh`. A refresh that
//! finds an object changed behind the controller's back (drift made in the portal)
//! triggers its package's pass. A picture too old to act on makes the process unready and
//! says why; passes then write nothing until it is fresh again.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use super::Config;
use super::metrics::Metrics;
use crate::backend::Backend;
use crate::backend::snapshot::Snapshot;
use crate::resources::AppAttachPackage;

/// How often the picture's age is published while the loop waits.
const TICK: Duration = Duration::from_secs(5);

/// The refresh loop, to run for as long as the controllers run (dropped with them). The
/// packages to reconcile because the backend changed under them go to `changed`; the
/// receiver returned turns true after the first complete refresh. Only the operator's own
/// backend (`publish`) sets the process's picture metrics and readiness: a target's stale
/// picture holds its own packages' writes, not the whole controller.
pub fn task<B: Backend + Clone>(
    snapshot: Arc<Snapshot>,
    backend: &B,
    config: &Config,
    changed_tx: tokio::sync::mpsc::Sender<ObjectRef<AppAttachPackage>>,
    publish: bool,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    tokio::sync::watch::Receiver<bool>,
) {
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let backend = backend.patient();
    let (period, max_age, metrics) = (
        config.backend_refresh,
        config.max_snapshot_age(),
        config.metrics.clone(),
    );
    let run = async move {
        let mut failures = 0u32;
        loop {
            let took = std::time::Instant::now();
            let wait = match snapshot.refresh(&backend).await {
                Ok(changed) => {
                    failures = 0;
                    let first = !*ready_tx.borrow();
                    ready_tx.send_replace(true);
                    if publish {
                        metrics.snapshot_refreshed(true, took.elapsed(), snapshot.health().calls);
                    }
                    if !first {
                        trigger(&changed_tx, changed).await;
                    }
                    period
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!("refreshing the picture of the backend: {e}");
                    if publish {
                        metrics.snapshot_refreshed(false, took.elapsed(), 0);
                    }
                    // Until the first picture, and after a failure, try again sooner.
                    Duration::from_secs(1 << failures.min(6)).min(period)
                }
            };
            if publish {
                wait_publishing_age(&snapshot, &metrics, wait, max_age).await;
            } else {
                tokio::time::sleep(wait).await;
            }
        }
    };
    (run, ready_rx)
}

/// Sends a pass for each package whose backend objects changed.
async fn trigger(
    tx: &tokio::sync::mpsc::Sender<ObjectRef<AppAttachPackage>>,
    owners: std::collections::BTreeSet<String>,
) {
    for owner in owners {
        if let Some((ns, name)) = owner.split_once('/') {
            // A controller that is gone has stopped with the process.
            let _ = tx.send(ObjectRef::new(name).within(ns)).await;
        }
    }
}

/// Waits `wait`, publishing the picture's age, and whether it is too old, as it goes.
async fn wait_publishing_age(
    snapshot: &Snapshot,
    metrics: &Metrics,
    wait: Duration,
    max_age: Duration,
) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let h = snapshot.health();
        metrics.snapshot_age(h.age);
        match h.age {
            Some(age) if age > max_age => metrics.set_stale(Some(format!(
                "the picture of the backend is {}s old (more than {}s){}: writes wait until a refresh succeeds",
                age.as_secs(),
                max_age.as_secs(),
                h.last_error
                    .map(|e| format!("; the last refresh failed: {e}"))
                    .unwrap_or_default()
            ))),
            _ => metrics.set_stale(None),
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep(TICK.min(until - now)).await;
    }
}
