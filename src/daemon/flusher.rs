//! The one place flushes start in the daemon. Every trigger (schedule, ETRN, ODMR,
//! AUTOTURN, new mail, the operator) goes through [`Flusher`], which keeps at most one
//! flush per site running in this process (the RELAYHOST lock keeps it to one across
//! processes and hosts), bounds the number of parallel flushes, and spaces scheduled
//! starts by a grace period as a serialmail host's cron-driven
//! master script does.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::spoolhint::SpoolHints;
use crate::flush::{self, FlushContext, FlushResult};
use crate::spool::site::{self, Discovery, Site};

/// Longest wait of the due spools known to be empty for the flushes of the others.
const EMPTY_PASS_WAIT: Duration = Duration::from_secs(1);

/// Where the daemon's sites come from.
pub enum SiteSource {
    /// Directories under these patterns (`[sites] roots`, the files backend).
    Files(Vec<String>),
    /// The rows of the database's sites table in the engine's texts (the `postgres`
    /// backend): discovered again whenever the engine's version moves.
    Engine(Arc<crate::engine::Engine>),
}

impl SiteSource {
    fn discover(&self, root: &std::path::Path) -> Discovery {
        match self {
            SiteSource::Files(patterns) => site::discover(root, patterns),
            SiteSource::Engine(engine) => match (engine.texts(), engine.version()) {
                (Some(texts), Some(version)) => {
                    crate::spool::site_rows::discover_rows(root, &texts, version)
                }
                _ => Discovery::default(),
            },
        }
    }

    /// The engine's version, when the sites follow it.
    fn version(&self) -> Option<u64> {
        match self {
            SiteSource::Files(_) => None,
            SiteSource::Engine(engine) => engine.version(),
        }
    }
}

pub struct Flusher {
    pub ctx: FlushContext,
    metrics: Arc<super::metrics::Metrics>,
    root: PathBuf,
    source: SiteSource,
    sites: RwLock<Arc<Discovery>>,
    /// Counts discoveries installed, so the scheduler knows when to plan again.
    generation: AtomicU64,
    hints: SpoolHints,
    running: Arc<Mutex<HashSet<String>>>,
    parallel: Arc<Semaphore>,
    grace: Duration,
    last_scheduled_start: tokio::sync::Mutex<Option<Instant>>,
}

/// Removes a site from the running set when its flush ends, however it ends.
struct Running {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

impl Flusher {
    pub fn new(
        metrics: Arc<super::metrics::Metrics>,
        ctx: FlushContext,
        root: PathBuf,
        source: SiteSource,
        max_parallel: usize,
        grace: Duration,
    ) -> Flusher {
        let d = source.discover(&root);
        for p in &d.problems {
            tracing::warn!(target: "sites", "{p}");
        }
        Flusher {
            ctx,
            metrics,
            root,
            source,
            sites: RwLock::new(Arc::new(d)),
            generation: AtomicU64::new(0),
            hints: SpoolHints::default(),
            running: Arc::new(Mutex::new(HashSet::new())),
            parallel: Arc::new(Semaphore::new(max_parallel.max(1))),
            grace,
            last_scheduled_start: tokio::sync::Mutex::new(None),
        }
    }

    /// The sites as last discovered.
    pub fn sites(&self) -> Arc<Discovery> {
        self.sites.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many discoveries were installed since the start.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Look for sites again (they appear and disappear with their directories).
    pub async fn refresh(self: &Arc<Self>) {
        self.refresh_if_changed(true).await;
    }

    /// Look for sites again if anything they were found from changed, or always with
    /// `force`; then look into the spools of sites not seen before. True if the sites
    /// were discovered again.
    pub async fn refresh_if_changed(self: &Arc<Self>, force: bool) -> bool {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let again = force || me.sites().watch.changed() || me.version_moved();
            if again {
                let d = me.source.discover(&me.root);
                let names: HashSet<&str> = d.sites.iter().map(|s| s.name.as_str()).collect();
                me.hints.retain(&names);
                *me.sites.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(d);
                me.generation.fetch_add(1, Ordering::AcqRel);
            }
            me.learn_spools();
            again
        })
        .await
        .unwrap_or(false)
    }

    /// Whether the sites are the rows of the engine's texts (the `postgres` backend).
    pub fn follows_engine(&self) -> bool {
        matches!(self.source, SiteSource::Engine(_))
    }

    /// Whether the sites follow the engine's texts and these moved on since the last
    /// discovery (a site added, changed or removed in the database).
    pub fn version_moved(&self) -> bool {
        let v = self.source.version();
        v.is_some() && v != self.sites().version
    }

    /// Forget what is known about the spools (the scheduler's periodic sweep).
    pub fn forget_spools(&self) {
        self.hints.clear();
    }

    /// Look into the spools of sites not known yet, so that when they fall due those
    /// with mail are found first and the empty ones cost a stat. Blocking.
    fn learn_spools(&self) {
        for s in &self.sites().sites {
            if !self.hints.known(&s.name) {
                self.hints.has_mail(s);
            }
        }
    }

    /// Scheduled flushes of the named sites, off the timer: one blocking task looks
    /// into their spools, those likely to hold mail first, and starts a flush for each
    /// with mail as soon as it is found. The spools known to be empty (thousands of
    /// stats) are looked at once those flushes are done, or after [`EMPTY_PASS_WAIT`],
    /// so that the CPU goes to the sites with mail first. Empty sites cost no task,
    /// lock or connection.
    pub fn start_due(self: &Arc<Self>, names: Vec<String>) {
        let me = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let sites = me.sites();
            let mut by_name: HashMap<&str, &Site> = HashMap::with_capacity(sites.sites.len());
            by_name.extend(sites.sites.iter().map(|s| (s.name.as_str(), s)));
            let due = names
                .iter()
                .filter_map(|n| by_name.get(n.as_str()).copied())
                .collect();
            let (likely, empty) = me.hints.likely_first(due);
            let started: Vec<_> = likely
                .into_iter()
                .filter(|s| !me.is_running(&s.name) && me.hints.has_mail(s))
                .map(|s| me.start_scheduled(s.clone()))
                .collect();
            if !started.is_empty() {
                let done = async {
                    for flush in started {
                        let _ = flush.await;
                    }
                };
                let _ = runtime.block_on(tokio::time::timeout(EMPTY_PASS_WAIT, done));
            }
            for s in empty {
                if !me.is_running(&s.name) && me.hints.has_mail(s) {
                    me.start_scheduled(s.clone());
                }
            }
        });
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Whether a flush of `site` runs here, or in another process or on another node
    /// (its lock is held). A lock that cannot be tried counts as free: the flush
    /// reports the trouble. The probe holds the lock for an instant, so a flush trying
    /// it at that very instant skips the site until its next trigger; nothing is lost.
    pub fn running_anywhere(&self, site: &Site) -> bool {
        self.is_running(&site.name) || matches!(crate::spool::site::try_lock(site), Ok(None))
    }

    fn claim(&self, name: &str) -> Option<Running> {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !r.insert(name.to_string()) {
            return None;
        }
        Some(Running {
            set: self.running.clone(),
            name: name.to_string(),
        })
    }

    /// Flush now and wait for the result; None if a flush of this site is running.
    pub async fn flush_now(
        &self,
        site: &Site,
        to: Option<&str>,
        reason: &str,
    ) -> Option<FlushResult> {
        let running = self.claim(&site.name)?;
        self.flush_claimed(running, site, to, reason).await
    }

    async fn flush_claimed(
        &self,
        _running: Running,
        site: &Site,
        to: Option<&str>,
        reason: &str,
    ) -> Option<FlushResult> {
        let _permit = self.parallel.clone().acquire_owned().await.ok()?;
        tracing::info!(target: "flush", site = %site.name, reason, to = to.unwrap_or("RELAYHOST"), "flush starting");
        let t = Instant::now();
        let r = flush::flush_site(site, &self.ctx, to).await;
        self.metrics.flush(reason, &r, t.elapsed());
        Some(r)
    }

    /// Start a flush in the background; false if one is already running. The site is
    /// claimed before this returns, so a caller told "started" is never raced by
    /// another trigger that then finds the site claimed by neither.
    pub fn trigger(self: &Arc<Self>, site: Site, to: Option<String>, reason: &'static str) -> bool {
        let Some(running) = self.claim(&site.name) else {
            return false;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me
                .flush_claimed(running, &site, to.as_deref(), reason)
                .await;
        });
        true
    }

    /// A scheduled flush of a site with mail: like `trigger`, but starts are spaced by
    /// the grace period.
    fn start_scheduled(self: &Arc<Self>, site: Site) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            {
                let mut last = me.last_scheduled_start.lock().await;
                if let Some(t) = *last {
                    let wait = (t + me.grace).saturating_duration_since(Instant::now());
                    tokio::time::sleep(wait).await;
                }
                *last = Some(Instant::now());
            }
            let _ = me.flush_now(&site, None, "schedule").await;
        })
    }

    /// Flush several sites, one after another in one session, over an existing
    /// connection (ODMR's reversed connection). A site whose flush is running is
    /// skipped (its result is None), as is one whose lock another process holds
    /// (`Locked`); None if every site's flush is running.
    pub async fn flush_over<S>(
        &self,
        sites: &[Site],
        stream: S,
    ) -> Option<Vec<(Site, Option<FlushResult>)>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut claims = Vec::new();
        let mut mine = Vec::new();
        for s in sites {
            if let Some(c) = self.claim(&s.name) {
                claims.push(c);
                mine.push(s.clone());
            }
        }
        if mine.is_empty() {
            return None;
        }
        let _permit = self.parallel.clone().acquire_owned().await.ok()?;
        let t = Instant::now();
        let results =
            flush::flush_sites_with(&mine, &self.ctx, |_| async move { Ok::<S, String>(stream) })
                .await;
        for r in &results {
            self.metrics.flush("odmr", r, t.elapsed());
        }
        drop(claims);
        let mut by_name: HashMap<String, FlushResult> =
            mine.into_iter().map(|s| s.name).zip(results).collect();
        Some(
            sites
                .iter()
                .map(|s| (s.clone(), by_name.remove(&s.name)))
                .collect(),
        )
    }

    /// Messages waiting in a site's spool (cheap: a directory scan, no file reads).
    pub fn queued(site: &Site) -> usize {
        site.maildir()
            .list(std::time::SystemTime::now() + Duration::from_secs(1))
            .map_or(0, |l| l.len())
    }
}
