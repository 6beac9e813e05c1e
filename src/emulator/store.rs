//! The emulator's state: every resource in memory for fast reads, written through to an
//! embedded transactional store (redb) so it survives restarts. Each request's changes are
//! committed in one redb transaction: a kill -9 at any moment leaves either all of a
//! request's writes or none of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::arm::{ResourceId, ResourceType};

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("role_assignments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A stored `Microsoft.DesktopVirtualization` resource: its id and its body as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The id, in the case it was created with.
    pub id: String,
    /// The body GET returns.
    pub body: Value,
}

impl Stored {
    /// The parsed id (stored ids always parse).
    pub fn resource_id(&self) -> ResourceId {
        ResourceId::parse(&self.id).expect("stored ids parse")
    }
}

/// What a session got at sign-in (the emulator's own bookkeeping, never served by ARM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// The user session's ARM id.
    pub id: String,
    /// The user's UPN.
    pub user: String,
    /// The packages attached at sign-in.
    pub packages: Vec<crate::domain::entitlements::Entitlement>,
    /// Messages sent to the session.
    #[serde(default)]
    pub messages: Vec<crate::arm::models::SendMessage>,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("the emulator's state store failed: {0}")]
    Db(String),
    /// Stored data is unreadable.
    #[error("the emulator's state is unreadable: {0}")]
    Corrupt(String),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The state, in memory, with its pending writes.
pub struct State {
    db: Option<Database>,
    /// Resources by lower-case id, with their kind (so scans by kind parse no ids).
    resources: BTreeMap<String, (ResourceType, Stored)>,
    /// Role assignments by lower-case id.
    roles: BTreeMap<String, Value>,
    /// Indexes, kept by `insert_*` and `remove_*` so that no request scans every resource
    /// (a cold start of 10,000 packages was quadratic in the emulator before them).
    index: Indexes,
    /// Small named values: the world, counters, session records.
    meta: BTreeMap<String, Value>,
    pending: Vec<Write>,
}

/// What the emulator looks up other than by id.
#[derive(Default)]
struct Indexes {
    /// The lower-case ids of the resources of each kind.
    by_kind: HashMap<ResourceType, BTreeSet<String>>,
    /// The lower-case ids of the resources that reference a host pool (packages by
    /// `hostPoolReferences`, application groups by `hostPoolArmPath`), by its lower-case id.
    referrers: HashMap<String, BTreeSet<String>>,
    /// The lower-case ids of the role assignments at each lower-case scope.
    roles_by_scope: BTreeMap<String, BTreeSet<String>>,
}

/// The host pools a resource body references, lower-case.
fn references(kind: ResourceType, body: &Value) -> Vec<String> {
    let props = &body["properties"];
    match kind {
        ResourceType::AppAttachPackage => props["hostPoolReferences"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default(),
        ResourceType::ApplicationGroup => props["hostPoolArmPath"]
            .as_str()
            .map(|p| vec![p.to_ascii_lowercase()])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The lower-case scope of a role assignment body, without a trailing slash.
fn role_scope(body: &Value) -> String {
    body["properties"]["scope"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_ascii_lowercase()
}

enum Write {
    Resource(String, Option<Vec<u8>>),
    Role(String, Option<Vec<u8>>),
    Meta(String, Option<Vec<u8>>),
}

impl State {
    /// An empty state kept in memory only.
    pub fn in_memory() -> Self {
        Self {
            db: None,
            resources: BTreeMap::new(),
            roles: BTreeMap::new(),
            index: Indexes::default(),
            meta: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    /// Opens (or creates) the state under `dir` and loads it into memory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(db_err)?;
        let db = Database::create(dir.join("emulator.redb")).map_err(db_err)?;
        {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(RESOURCES).map_err(db_err)?;
            tx.open_table(ROLES).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        let mut state = Self::in_memory();
        {
            let tx = db.begin_read().map_err(db_err)?;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
            for row in tx
                .open_table(RESOURCES)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, v) = row.map_err(db_err)?;
                let stored: Stored = serde_json::from_slice(v.value()).map_err(corrupt)?;
                let kind = ResourceId::parse(&stored.id)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("stored id {} does not parse", stored.id))
                    })?
                    .kind;
                state.insert_resource(k.value().to_string(), kind, stored);
            }
            for row in tx
                .open_table(ROLES)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, v) = row.map_err(db_err)?;
                state.insert_role(
                    k.value().to_string(),
                    serde_json::from_slice(v.value()).map_err(corrupt)?,
                );
            }
            for row in tx
                .open_table(META)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, v) = row.map_err(db_err)?;
                state.meta.insert(
                    k.value().to_string(),
                    serde_json::from_slice(v.value()).map_err(corrupt)?,
                );
            }
        }
        state.db = Some(db);
        Ok(state)
    }

    /// Writes every change made since the last commit, in one transaction.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let Some(db) = &self.db else { return Ok(()) };
        if pending.is_empty() {
            return Ok(());
        }
        let tx = db.begin_write().map_err(db_err)?;
        {
            let mut resources = tx.open_table(RESOURCES).map_err(db_err)?;
            let mut roles = tx.open_table(ROLES).map_err(db_err)?;
            let mut meta = tx.open_table(META).map_err(db_err)?;
            for w in &pending {
                let (table, key, value) = match w {
                    Write::Resource(k, v) => (&mut resources, k, v),
                    Write::Role(k, v) => (&mut roles, k, v),
                    Write::Meta(k, v) => (&mut meta, k, v),
                };
                match value {
                    Some(bytes) => {
                        table
                            .insert(key.as_str(), bytes.as_slice())
                            .map_err(db_err)?;
                    }
                    None => {
                        table.remove(key.as_str()).map_err(db_err)?;
                    }
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Drops changes not yet committed from the write queue (the in-memory state keeps
    /// them; callers only discard after a failed validation that changed nothing).
    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// A resource by id.
    pub fn get(&self, id: &ResourceId) -> Option<&Stored> {
        self.resources.get(&id.key()).map(|(_, s)| s)
    }

    /// Creates or replaces a resource.
    pub fn put(&mut self, id: &ResourceId, body: Value) {
        let stored = Stored {
            id: id.to_string(),
            body,
        };
        let key = id.key();
        self.pending.push(Write::Resource(
            key.clone(),
            Some(serde_json::to_vec(&stored).expect("JSON")),
        ));
        self.insert_resource(key, id.kind, stored);
    }

    fn insert_resource(&mut self, key: String, kind: ResourceType, stored: Stored) {
        self.remove_resource(&key);
        for target in references(kind, &stored.body) {
            self.index
                .referrers
                .entry(target)
                .or_default()
                .insert(key.clone());
        }
        self.index
            .by_kind
            .entry(kind)
            .or_default()
            .insert(key.clone());
        self.resources.insert(key, (kind, stored));
    }

    fn remove_resource(&mut self, key: &str) -> bool {
        let Some((kind, old)) = self.resources.remove(key) else {
            return false;
        };
        for target in references(kind, &old.body) {
            if let Some(set) = self.index.referrers.get_mut(&target) {
                set.remove(key);
                if set.is_empty() {
                    self.index.referrers.remove(&target);
                }
            }
        }
        if let Some(set) = self.index.by_kind.get_mut(&kind) {
            set.remove(key);
        }
        true
    }

    /// Deletes a resource and every child under it; returns whether it existed.
    pub fn delete(&mut self, id: &ResourceId) -> bool {
        let key = id.key();
        let children: Vec<String> = self
            .resources
            .range(format!("{key}/")..)
            .take_while(|(k, _)| k.starts_with(&format!("{key}/")))
            .map(|(k, _)| k.clone())
            .collect();
        for k in children {
            self.remove_resource(&k);
            self.pending.push(Write::Resource(k, None));
        }
        let existed = self.remove_resource(&key);
        self.pending.push(Write::Resource(key, None));
        existed
    }

    /// Every resource of `kind` whose lower-case id starts with `prefix` (the resource
    /// group's provider path for top-level kinds, the parent's id for children).
    pub fn list(&self, kind: ResourceType, prefix: &str) -> Vec<&Stored> {
        let prefix = prefix.to_ascii_lowercase();
        self.resources
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, (k, _))| *k == kind)
            .map(|(_, (_, s))| s)
            .collect()
    }

    /// Every resource of `kind`, in every resource group.
    pub fn all(&self, kind: ResourceType) -> impl Iterator<Item = &Stored> {
        self.index
            .by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .filter_map(|k| self.resources.get(k).map(|(_, s)| s))
    }

    /// The resources of `kind` that reference the host pool with this lower-case id
    /// (packages by `hostPoolReferences`, application groups by `hostPoolArmPath`).
    pub fn referrers<'a>(
        &'a self,
        kind: ResourceType,
        pool_key: &str,
    ) -> impl Iterator<Item = &'a Stored> + 'a {
        self.index
            .referrers
            .get(pool_key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.resources.get(k))
            .filter(move |(k, _)| *k == kind)
            .map(|(_, s)| s)
    }

    /// A role assignment by id.
    pub fn role(&self, id: &str) -> Option<&Value> {
        self.roles.get(&id.to_ascii_lowercase())
    }

    /// Creates or replaces a role assignment.
    pub fn put_role(&mut self, id: &str, body: Value) {
        let key = id.to_ascii_lowercase();
        self.pending.push(Write::Role(
            key.clone(),
            Some(serde_json::to_vec(&body).expect("JSON")),
        ));
        self.insert_role(key, body);
    }

    fn insert_role(&mut self, key: String, body: Value) {
        self.remove_role(&key);
        self.index
            .roles_by_scope
            .entry(role_scope(&body))
            .or_default()
            .insert(key.clone());
        self.roles.insert(key, body);
    }

    fn remove_role(&mut self, key: &str) -> bool {
        let Some(old) = self.roles.remove(key) else {
            return false;
        };
        let scope = role_scope(&old);
        if let Some(set) = self.index.roles_by_scope.get_mut(&scope) {
            set.remove(key);
            if set.is_empty() {
                self.index.roles_by_scope.remove(&scope);
            }
        }
        true
    }

    /// Deletes a role assignment; returns whether it existed.
    pub fn delete_role(&mut self, id: &str) -> bool {
        let key = id.to_ascii_lowercase();
        self.pending.push(Write::Role(key.clone(), None));
        self.remove_role(&key)
    }

    /// The role assignments at `scope` exactly (any case, trailing slash or not), by id.
    pub fn roles_at(&self, scope: &str) -> impl Iterator<Item = &Value> {
        let scope = scope.trim_end_matches('/').to_ascii_lowercase();
        self.index
            .roles_by_scope
            .get(&scope)
            .into_iter()
            .flatten()
            .filter_map(|k| self.roles.get(k))
    }

    /// The role assignments at `scope` or above it (its resource, resource group and
    /// subscription, ...) and, with `below`, at every scope under it; in id order.
    pub fn roles_around(&self, scope: &str, below: bool) -> Vec<&Value> {
        let scope = scope.trim_end_matches('/').to_ascii_lowercase();
        let mut keys: BTreeSet<&String> = BTreeSet::new();
        let above = scope
            .match_indices('/')
            .map(|(i, _)| &scope[..i])
            .filter(|s| !s.is_empty())
            .chain(std::iter::once(scope.as_str()));
        for s in above {
            keys.extend(self.index.roles_by_scope.get(s).into_iter().flatten());
        }
        if below {
            let under = format!("{scope}/");
            keys.extend(
                self.index
                    .roles_by_scope
                    .range(under.clone()..)
                    .take_while(|(s, _)| s.starts_with(&under))
                    .flat_map(|(_, set)| set),
            );
        }
        keys.into_iter().filter_map(|k| self.roles.get(k)).collect()
    }

    /// A named value.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.meta.get(key)
    }

    /// Sets or removes a named value.
    pub fn set_meta(&mut self, key: &str, value: Option<Value>) {
        self.pending.push(Write::Meta(
            key.to_string(),
            value.as_ref().map(|v| serde_json::to_vec(v).expect("JSON")),
        ));
        match value {
            Some(v) => self.meta.insert(key.to_string(), v),
            None => self.meta.remove(key),
        };
    }

    /// Named values whose key starts with `prefix`.
    pub fn meta_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.meta
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Whether nothing was ever stored.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.roles.is_empty() && self.meta.is_empty()
    }
}
