//! Secondary indexes over the watch caches: the objects of a kind by a key computed from
//! each (the assignments of a package, the packages of a full name). A pass that looked
//! these up by scanning a whole cache made a cold start quadratic in the number of objects
//! (profiled with `appattach bench`, see BENCHMARKS.md).
//!
//! An index is fed the same watch events as the reflector store it sits beside, just before
//! the store, and answers with references that are resolved through the store: what a
//! lookup returns is always the store's current object, re-checked by the caller.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// The objects of a kind by a key computed from each object.
pub struct Index<K> {
    key: fn(&K) -> String,
    state: Arc<RwLock<State<K>>>,
    /// Whether the store beside it holds its first list. kube's own
    /// `Store::wait_until_ready` keeps one waker only, so a check of it from one task
    /// (`now_or_never`) silently drops the waiter of another: /readyz once came 30 s late
    /// that way. This one wakes every waiter.
    listed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            key: self.key,
            state: self.state.clone(),
            listed: self.listed.clone(),
        }
    }
}

/// An object by namespace and name: lighter than an `ObjectRef`, which also carries the
/// resource version and uid (and was cloned on every event). Shared by both maps, as the
/// key is: at 40,000 objects each copy counts (measured with `appattach bench`).
type Name = Arc<(Box<str>, Box<str>)>;

fn name_of<K: kube::Resource>(o: &K) -> Name {
    Arc::new((
        o.meta().namespace.as_deref().unwrap_or_default().into(),
        o.meta().name.as_deref().unwrap_or_default().into(),
    ))
}

struct State<K> {
    /// A key's objects: one or two (a Vec, not a set: a set's table is larger than that).
    by_key: HashMap<Arc<str>, Vec<Name>>,
    key_of: HashMap<Name, Arc<str>>,
    /// The keys of a relist in progress (between `Init` and `InitDone`), which replace
    /// everything at its end, as the store's buffer does.
    relist: Option<HashMap<Name, Arc<str>>>,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> State<K> {
    fn remove(&mut self, r: &Name) {
        if let Some(key) = self.key_of.remove(r)
            && let Some(names) = self.by_key.get_mut(&key)
        {
            names.retain(|n| n != r);
            if names.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    fn insert(&mut self, r: Name, key: Arc<str>) {
        self.remove(&r);
        // One copy of a key shared by several objects.
        let key = match self.by_key.get_key_value(&key) {
            Some((k, _)) => k.clone(),
            None => key,
        };
        let names = self.by_key.entry(key.clone()).or_default();
        names.push(r.clone());
        names.shrink_to_fit();
        self.key_of.insert(r, key);
    }
}

impl<K> Index<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    /// An empty index keyed by `key`.
    pub fn new(key: fn(&K) -> String) -> Self {
        Self {
            key,
            state: Arc::new(RwLock::new(State {
                by_key: HashMap::new(),
                key_of: HashMap::new(),
                relist: None,
                kind: std::marker::PhantomData,
            })),
            listed: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Marks the store beside it as holding its first list: called once the store has
    /// taken the `InitDone` event, never before.
    pub fn mark_listed(&self) {
        self.listed
            .send_if_modified(|l| !std::mem::replace(l, true));
    }

    /// Whether the store beside it holds its first list.
    pub fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// Waits until the store beside it holds its first list.
    pub async fn listed(&self) {
        let mut rx = self.listed.subscribe();
        // The sender lives as long as this index.
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Takes in one watch event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Apply(o) => state.insert(name_of(o), (self.key)(o).into()),
            watcher::Event::Delete(o) => state.remove(&name_of(o)),
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                let key: Arc<str> = (self.key)(o).into();
                state
                    .relist
                    .get_or_insert_with(HashMap::new)
                    .insert(name_of(o), key);
            }
            watcher::Event::InitDone => {
                let relisted = state.relist.take().unwrap_or_default();
                state.by_key.clear();
                state.key_of.clear();
                for (r, key) in relisted {
                    state.insert(r, key);
                }
            }
        }
    }

    /// The objects of `store` under `key`, sorted by name (objects the store no longer
    /// holds are left out).
    pub fn get(&self, store: &Store<K>, key: &str) -> Vec<Arc<K>> {
        let refs: Vec<ObjectRef<K>> = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_key
            .get(key)
            .map(|set| {
                set.iter()
                    .map(|n| ObjectRef::new(&n.1).within(&n.0))
                    .collect()
            })
            .unwrap_or_default();
        let mut found: Vec<Arc<K>> = refs.iter().filter_map(|r| store.get(r)).collect();
        found.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        found
    }
}

/// A watch stream that feeds `index` with every event it passes on.
pub fn feed<K, E>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, E>>,
    index: Index<K>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, E>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use futures::TryStreamExt;
    events.inspect_ok(move |event| index.apply(event))
}

/// The key of the objects in `namespace` that point at `name`.
pub fn namespaced_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::HostPoolAssignment;
    use kube::runtime::reflector;

    fn hpa(name: &str, package: &str) -> HostPoolAssignment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "appattach.io/v1alpha1",
            "kind": "HostPoolAssignment",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"packageRef": {"name": package}, "hostPools": [{"name": "hp"}]}
        }))
        .expect("a HostPoolAssignment")
    }

    fn by_package(a: &HostPoolAssignment) -> String {
        namespaced_key(a.metadata.namespace.as_deref(), &a.spec.package_ref.name)
    }

    /// Applies events to a store and an index, as the controller's streams do.
    fn both(
        events: Vec<watcher::Event<HostPoolAssignment>>,
    ) -> (Store<HostPoolAssignment>, Index<HostPoolAssignment>) {
        let (store, mut writer) = reflector::store::<HostPoolAssignment>();
        let index = Index::new(by_package);
        for e in &events {
            index.apply(e);
            writer.apply_watcher_event(e);
        }
        (store, index)
    }

    fn names(found: Vec<Arc<HostPoolAssignment>>) -> Vec<String> {
        found
            .iter()
            .map(|a| a.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn finds_what_points_at_a_key_and_follows_changes() {
        use watcher::Event::*;
        let (store, index) = both(vec![
            Init,
            InitApply(hpa("b", "app")),
            InitApply(hpa("a", "app")),
            InitApply(hpa("c", "other")),
            InitDone,
            Apply(hpa("d", "app")),
            Delete(hpa("b", "app")),
        ]);
        assert_eq!(names(index.get(&store, "ns/app")), ["a", "d"]);
        assert_eq!(names(index.get(&store, "ns/other")), ["c"]);
        assert!(index.get(&store, "ns/none").is_empty());
        assert!(index.get(&store, "elsewhere/app").is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_it_does_not_name() {
        use watcher::Event::*;
        let (store, index) = both(vec![
            Init,
            InitApply(hpa("a", "app")),
            InitApply(hpa("b", "app")),
            InitDone,
            // The watch was lost while b went away and a moved (a re-creation).
            Init,
            InitApply(hpa("a", "other")),
            InitDone,
        ]);
        assert!(index.get(&store, "ns/app").is_empty());
        assert_eq!(names(index.get(&store, "ns/other")), ["a"]);
    }

    #[test]
    fn an_object_whose_key_changes_leaves_its_old_key() {
        use watcher::Event::*;
        let (store, index) = both(vec![Apply(hpa("a", "app")), Apply(hpa("a", "next"))]);
        assert!(index.get(&store, "ns/app").is_empty());
        assert_eq!(names(index.get(&store, "ns/next")), ["a"]);
    }

    /// Readiness waits for the first list while passes check it now and then; every
    /// waiter wakes when it is in. (With kube's `Store::wait_until_ready`, a pass's check
    /// took the waker of /readyz's waiter, which then woke only at its 30 s timeout.)
    #[tokio::test]
    async fn every_waiter_wakes_when_the_first_list_is_in_whoever_checked_before() {
        let index: Index<HostPoolAssignment> = Index::new(by_package);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let index = index.clone();
                tokio::spawn(async move { index.listed().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!index.is_listed(), "listed before its first list");
        index.mark_listed();
        assert!(index.is_listed());
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("a waiter was not woken")
                .expect("the waiter's task");
        }
    }
}
