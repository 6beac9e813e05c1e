//! The embedded management backend: an ARM-compatible emulator of the parts of
//! `Microsoft.DesktopVirtualization` and `Microsoft.Authorization` that app attach uses,
//! with a simulated world of host pools, session hosts, application groups and users.
//!
//! ARM requests are served by [`arm_api`] (and the session hosts' virtual machines, read
//! only, by [`compute`]); the emulator's own controls (sign-in, staging,
//! faults, request counts) live under `/_emulator/` in [`admin`]. State lives in memory
//! and in an embedded transactional store ([`store`]). When asked, ARM's request budget
//! is enforced on the callers ([`ratelimit`]). Entra ID's token endpoint for the world's
//! identities is served on the same listener ([`entra`]), and a world with a `tenantId`
//! has ARM refuse callers as Azure does: without a token of that tenant (401), or not
//! among the world's `principals` (403).

pub mod admin;
pub mod arm_api;
pub mod compute;
pub mod entra;
pub mod faults;
pub mod ratelimit;
pub mod staging;
pub mod store;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use world::World;

/// ARM's request budget per caller, as burst and rate a second of each operation kind:
/// [`Budget::ARM`] is Azure's (reads 250 at once then 25 a second; writes and deletes 200
/// then 10). The same type as the ARM client's own budget
/// ([`crate::backend::throttle::Limits`]), so a test can give both the same numbers.
pub use crate::budget::Limits as Budget;

/// A UNC share prefix mapped to a local directory: `\\fs\appattach=/srv/images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMapping {
    /// UNC prefix, e.g. `\\fs.contoso.com\appattach`.
    pub unc: String,
    /// Local directory holding the share's files.
    pub dir: PathBuf,
}

impl std::str::FromStr for ShareMapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (unc, dir) = s.split_once('=').ok_or_else(|| {
            format!("--share {s:?}: expected UNC=DIR, like '\\\\fs\\appattach=/srv/images'")
        })?;
        if !unc.starts_with(r"\\") || unc.len() < 3 {
            return Err(format!(
                "--share {s:?}: {unc:?} is not a UNC prefix like \\\\server\\share"
            ));
        }
        Ok(Self {
            unc: unc.trim_end_matches('\\').to_string(),
            dir: PathBuf::from(dir),
        })
    }
}

impl ShareMapping {
    /// The local path of a UNC path under this share, if it is under it.
    pub fn resolve(&self, unc_path: &str) -> Option<PathBuf> {
        let prefix = self.unc.to_ascii_lowercase();
        let lower = unc_path.to_ascii_lowercase();
        let rest = lower.strip_prefix(&prefix)?;
        if !(rest.is_empty() || rest.starts_with('\\')) {
            return None;
        }
        let rest = &unc_path[prefix.len()..];
        let mut path = self.dir.clone();
        for part in rest.split('\\').filter(|p| !p.is_empty()) {
            if part == ".." {
                return None;
            }
            path.push(part);
        }
        Some(path)
    }
}

/// How to run the emulator.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The world to load into a fresh state.
    pub world: Option<World>,
    /// Share mappings for staging.
    pub shares: Vec<ShareMapping>,
    /// Where state persists; in memory only when absent.
    pub state_dir: Option<PathBuf>,
    /// Bearer token every ARM request must carry, when set and the world has no
    /// `tenantId` (with one, ARM requests need a token of that tenant instead).
    pub token: Option<String>,
    /// How often session hosts stage; never on their own when absent (stage on demand).
    pub staging_interval: Option<Duration>,
    /// ARM's request budget, enforced per caller when set (429 `TooManyRequests` beyond
    /// it; see [`ratelimit`]); none when absent. `Some(Budget::ARM)` for Azure's limits.
    pub arm_budget: Option<Budget>,
}

/// Everything the handlers share, behind one lock.
pub struct Inner {
    /// Resources and bookkeeping.
    pub store: store::State,
    /// The world (directory, identity providers).
    pub world: World,
    /// Share mappings.
    pub shares: Vec<ShareMapping>,
    /// Fault rules.
    pub faults: faults::Faults,
    /// Request counts.
    pub counts: faults::Counts,
    /// The ARM writes applied, in order, with their bodies.
    pub writes: faults::WriteLog,
    /// The health reports session hosts made, in order, placed in the order of writes.
    pub reports: staging::ReportLog,
    /// What staging found of each image read, by file (and its size and time, so a
    /// changed file is read again).
    pub images: staging::ImageChecks,
    /// Required bearer token (when the world has no `tenantId`).
    pub token: Option<String>,
    /// The request budget enforced, if any.
    pub budget: Option<ratelimit::Limiter>,
}

/// A running emulator.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Mutex<Inner>>,
}

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The world cannot be loaded.
    #[error(transparent)]
    World(#[from] world::WorldError),
    /// The listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A served emulator: its address and the server task.
pub struct Served {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The emulator, for in-process inspection.
    pub emulator: Emulator,
    task: JoinHandle<()>,
    staging: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    /// The base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Entra ID authority host the emulator stands for (`AZURE_AUTHORITY_HOST`): its
    /// base URL, as tenants' token endpoints are under it.
    pub fn authority_host(&self) -> String {
        self.url()
    }

    /// The token endpoint of `tenant`: `{url}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.url())
    }
}

impl Served {
    /// Stops serving: finishes requests in flight, closes connections, stops staging, and
    /// returns once the state is closed (so another emulator may open it).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
        if let Some(staging) = self.staging.take() {
            staging.abort();
            let _ = staging.await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(s) = &self.staging {
            s.abort();
        }
    }
}

impl Emulator {
    /// Opens the state and, when the state is new, loads the world into it.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let mut store = match &config.state_dir {
            Some(dir) => store::State::open(dir)?,
            None => store::State::in_memory(),
        };
        let world = match (store.meta("world").cloned(), config.world) {
            (Some(stored), given) => {
                let stored: World = serde_json::from_value(stored)
                    .map_err(|e| store::StoreError::Corrupt(format!("stored world: {e}")))?;
                if given.as_ref().is_some_and(|g| g != &stored) {
                    tracing::warn!(
                        "the state already holds a world; the --world file is ignored (use a fresh --state to load it)"
                    );
                }
                stored
            }
            (None, Some(world)) => {
                // Only what is cheap at any scale: a world file was checked whole when
                // it was read, and a world built in code (tests, bench) is consistent.
                world.check_locations()?;
                arm_api::load_world(&mut store, &world);
                store.set_meta("world", Some(serde_json::to_value(&world).expect("JSON")));
                store.commit()?;
                world
            }
            (None, None) => World::default(),
        };
        if config.token.is_some() && world.tenant_id.is_some() {
            tracing::warn!(
                "the world has a tenantId: ARM requests need a token of that tenant, and --token is not used"
            );
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                store,
                world,
                shares: config.shares,
                faults: Default::default(),
                counts: Default::default(),
                writes: Default::default(),
                reports: Default::default(),
                images: Default::default(),
                token: config.token,
                budget: config.arm_budget.map(ratelimit::Limiter::new),
            })),
        })
    }

    /// Locks the state. A handler that panicked cannot leave it poisoned for good: the
    /// state is consistent between requests because writes commit per request.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves on `addr` (port 0 picks a free one) until the returned task is aborted.
    pub async fn serve(
        self,
        addr: SocketAddr,
        staging_interval: Option<Duration>,
    ) -> Result<Served, StartError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let router = admin::router(self.clone())
            .route(
                "/{tenant}/oauth2/v2.0/token",
                axum::routing::post(entra::token),
            )
            .fallback(arm_api::handle)
            .with_state(self.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("emulator server stopped: {e}");
            }
        });
        let staging = staging_interval.filter(|d| !d.is_zero()).map(|every| {
            let emulator = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let mut inner = emulator.lock();
                    staging::stage(&mut inner, None);
                    if let Err(e) = inner.store.commit() {
                        tracing::error!("committing staging results: {e}");
                    }
                }
            })
        });
        Ok(Served {
            addr,
            emulator: self,
            task,
            staging,
            stop: Some(stop),
        })
    }

    /// Starts an emulator from `config` on a free loopback port.
    pub async fn start(config: Config) -> Result<Served, StartError> {
        let interval = config.staging_interval;
        Self::new(config)?
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)), interval)
            .await
    }
}

/// Now, as ARM writes timestamps.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_mappings_resolve_unc_paths_under_them_only() {
        let m: ShareMapping = r"\\fs.contoso.com\appattach=/srv/images".parse().unwrap();
        assert_eq!(
            m.resolve(r"\\FS.contoso.com\AppAttach\apps\Contoso.cim"),
            Some(PathBuf::from("/srv/images/apps/Contoso.cim"))
        );
        assert_eq!(m.resolve(r"\\fs.contoso.com\appattach2\x.cim"), None);
        assert_eq!(m.resolve(r"\\other\appattach\x.cim"), None);
        assert_eq!(m.resolve(r"\\fs.contoso.com\appattach\..\etc\passwd"), None);
        assert!("no-equals".parse::<ShareMapping>().is_err());
        assert!("/local=/dir".parse::<ShareMapping>().is_err());
    }
}
