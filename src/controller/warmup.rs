//! A restart's first passes, paced so that a real change goes first. After a start, every
//! package gets a pass (the first list of the watches), but those passes wait their turn:
//! at most `concurrency` of them are handed to the controller at a time, each until its
//! pass ends. A change made meanwhile (a new generation, an annotation, an assignment's
//! spec) is handed over at once, so it waits behind a handful of passes rather than
//! behind every package of the estate.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::resources::AppAttachPackage;

/// How long a warm-up pass may hold its place before the place is given back anyway (a
/// package deleted before its pass never ends one).
const HOLD: Duration = Duration::from_secs(30);

/// The restart's pending passes, and the places they hold.
pub struct WarmUp {
    places: Arc<Semaphore>,
    held: Mutex<HashMap<String, (OwnedSemaphorePermit, Instant)>>,
    queued: Mutex<HashSet<String>>,
    tx: mpsc::UnboundedSender<ObjectRef<AppAttachPackage>>,
}

fn key(r: &ObjectRef<AppAttachPackage>) -> String {
    format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)
}

impl WarmUp {
    /// Paces the restart's passes `places` at a time; returns the stream of packages to
    /// hand to the controller (`reconcile_on`).
    pub fn new(
        places: usize,
    ) -> (
        Arc<Self>,
        impl futures::Stream<Item = ObjectRef<AppAttachPackage>> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let warm = Arc::new(Self {
            places: Arc::new(Semaphore::new(places.max(1))),
            held: Mutex::default(),
            queued: Mutex::default(),
            tx,
        });
        let stream = futures::stream::unfold((rx, warm.clone()), |(mut rx, warm)| async move {
            let r = rx.recv().await?;
            let place = warm.place().await;
            let k = key(&r);
            warm.queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&k);
            warm.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(k, (place, Instant::now()));
            Some((r, (rx, warm)))
        });
        (warm, stream)
    }

    /// A free place, giving back those held too long.
    async fn place(&self) -> OwnedSemaphorePermit {
        loop {
            match tokio::time::timeout(HOLD, self.places.clone().acquire_owned()).await {
                Ok(Ok(p)) => return p,
                Ok(Err(_)) => std::future::pending::<()>().await, // never closed
                Err(_) => {
                    self.held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|_, (_, since)| since.elapsed() < HOLD);
                }
            }
        }
    }

    /// Queues the restart's pass of a package (once, however many of its objects ask).
    pub fn queue(&self, r: ObjectRef<AppAttachPackage>) {
        if self
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(&r))
        {
            // A receiver gone has stopped with the controllers.
            let _ = self.tx.send(r);
        }
    }

    /// A pass of this package ended: the place it held goes to the next.
    pub fn done(&self, namespace: &str, name: &str) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("{namespace}/{name}"));
    }
}

/// Splits a kind's watch events: the objects of a first list (a start's, or a relist's)
/// go to the warm-up as the package `to_package` names; a later change of what `changed`
/// compares (the generation, say) passes on at once, and so does a deletion.
pub fn split<K, E, S>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, E>> + Send + 'static,
    warm: Arc<WarmUp>,
    to_package: fn(&K) -> ObjectRef<AppAttachPackage>,
    state: fn(&K) -> S,
) -> impl futures::Stream<Item = Result<K, E>> + Send + 'static
where
    K: kube::Resource + Send + 'static,
    E: Send + 'static,
    S: PartialEq + Send + 'static,
{
    use kube::ResourceExt;
    let mut seen: HashMap<(String, String), S> = HashMap::new();
    events
        .map(move |event| {
            let key = |o: &K| (o.meta().namespace.clone().unwrap_or_default(), o.name_any());
            let passed = match event {
                Err(e) => Some(Err(e)),
                Ok(watcher::Event::InitApply(o)) => match seen.insert(key(&o), state(&o)) {
                    // Seen for the first time: its pass waits its turn.
                    None => {
                        warm.queue(to_package(&o));
                        None
                    }
                    // A relist after the watch broke: what changed meanwhile is a change.
                    Some(old) if old != state(&o) => Some(Ok(o)),
                    Some(_) => None,
                },
                Ok(watcher::Event::Apply(o)) => {
                    let new = state(&o);
                    let old = seen.insert(key(&o), new);
                    let changed = old.is_none_or(|old| old != state(&o));
                    changed.then_some(Ok(o))
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(&key(&o));
                    Some(Ok(o))
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            };
            futures::stream::iter(passed)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> ObjectRef<AppAttachPackage> {
        ObjectRef::new(name).within("ns")
    }

    #[tokio::test]
    async fn a_restarts_passes_are_handed_over_a_few_at_a_time() {
        let (warm, stream) = WarmUp::new(2);
        tokio::pin!(stream);
        for n in ["a", "b", "c", "a"] {
            warm.queue(r(n));
        }
        let first = stream.next().await.unwrap();
        let second = stream.next().await.unwrap();
        assert_eq!((first.name.as_str(), second.name.as_str()), ("a", "b"));
        // Both places are held until a pass ends: the third waits.
        let waiting = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(waiting.is_err(), "handed over before a place was free");
        warm.done("ns", "a");
        assert_eq!(stream.next().await.unwrap().name, "c");
        // "a" was queued twice before its pass: one pass.
        warm.done("ns", "b");
        warm.done("ns", "c");
        let more = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(more.is_err(), "a package queued twice passed twice");
    }

    #[tokio::test]
    async fn a_first_list_waits_and_a_change_passes_at_once() {
        let (warm, warm_stream) = WarmUp::new(1);
        let pkg = |name: &str, generation: i64| -> AppAttachPackage {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "appattach.io/v1alpha1", "kind": "AppAttachPackage",
                "metadata": {"name": name, "namespace": "ns", "generation": generation},
                "spec": {"location": "westeurope", "image": {"path": r"\\fs\s\a.cim"},
                         "package": {"type": "Msix", "name": "A", "publisher": "CN=A", "version": "1.0.0.0"}}
            }))
            .unwrap()
        };
        let events = futures::stream::iter(vec![
            Ok::<_, ()>(watcher::Event::Init),
            Ok(watcher::Event::InitApply(pkg("x", 1))),
            Ok(watcher::Event::InitApply(pkg("y", 1))),
            Ok(watcher::Event::InitDone),
            // Its status changed: nothing to do.
            Ok(watcher::Event::Apply(pkg("x", 1))),
            // Its spec changed: at once.
            Ok(watcher::Event::Apply(pkg("y", 2))),
        ]);
        let live: Vec<_> = split(events, warm.clone(), ObjectRef::from_obj, |p| {
            p.metadata.generation
        })
        .collect()
        .await;
        let live: Vec<String> = live
            .into_iter()
            .map(|o| o.unwrap().metadata.name.unwrap())
            .collect();
        assert_eq!(live, ["y"]);
        // The first list went to the warm-up.
        tokio::pin!(warm_stream);
        assert_eq!(warm_stream.next().await.unwrap().name, "x");
    }
}
