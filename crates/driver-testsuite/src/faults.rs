//! A seeded workload to run through a faulty network (the [`proxy`](crate::proxy)'s fault
//! mode), checked afterwards directly on the backend.
//!
//! [`workload`] sends `ops` operations (puts from 0 bytes to several parts, whole and
//! ranged reads, stats, lists, walks, moves and deletes) through `faulty`, a driver whose
//! requests cross the proxy, keeping a model of what each path must hold. An operation
//! that succeeds must agree with the model; one that fails leaves its paths *unsure*
//! (either the old or the new content, never anything else). With faults off, every
//! path is then read through `direct` (the same storage, no proxy), and the whole tree
//! is walked: the [`Report`] lists every read that returned wrong bytes, every path whose
//! content is neither what was known nor a possible outcome, every stray path, every
//! "not found" for a path that certainly existed, and every error that does not name
//! the driver, the operation's path and a cause.
//!
//! ```no_run
//! # async fn demo(faulty: driver_api::Driver, direct: driver_api::Driver) {
//! use driver_testsuite::faults::{workload, Workload};
//! let w = Workload { ops: 200, seed: 7, part: 5 << 20, ..Workload::default() };
//! let report = workload(&faulty, &direct, "/faults", &w, |_on| { /* proxy.set_plan(..) */ }).await;
//! println!("{report}");
//! assert!(report.clean(), "{report}");
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use driver_api::{Driver, Operation, StorageError};
use futures::StreamExt;

use crate::data::DataGen;

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Operations to send.
    pub ops: usize,
    /// Seed of the choice of operations and of the data.
    pub seed: u64,
    /// The driver's part (chunk, block, segment) size: large puts span up to
    /// `max_parts` of them, plus a tail.
    pub part: usize,
    /// Parts of the largest put.
    pub max_parts: usize,
    /// Files the workload keeps at most (it deletes when it has more).
    pub files: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            ops: 200,
            seed: 1,
            part: 1 << 20,
            max_parts: 3,
            files: 24,
        }
    }
}

/// What happened (see the module docs).
#[derive(Debug, Default)]
pub struct Report {
    /// Per operation kind: (sent, succeeded).
    pub ops: BTreeMap<&'static str, (usize, usize)>,
    /// Every failure: the operation and the error's text.
    pub failures: Vec<String>,
    /// Failures that are not typed as they must be (no driver, no path, no cause, or
    /// another operation than the one that failed).
    pub untyped: Vec<String>,
    /// Successful reads whose bytes were wrong.
    pub corrupt: Vec<String>,
    /// Paths whose content at the end is neither known nor possible (lost or torn).
    pub lost: Vec<String>,
    /// Paths at the end that no operation could have left.
    pub stray: Vec<String>,
    /// "Not found" for a path that certainly existed.
    pub false_not_found: Vec<String>,
}

impl Report {
    /// Operations sent.
    pub fn sent(&self) -> usize {
        self.ops.values().map(|v| v.0).sum()
    }

    /// Operations that succeeded.
    pub fn succeeded(&self) -> usize {
        self.ops.values().map(|v| v.1).sum()
    }

    /// Nothing corrupt, lost, stray or untyped, and no false "not found".
    pub fn clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.lost.is_empty()
            && self.stray.is_empty()
            && self.false_not_found.is_empty()
            && self.untyped.is_empty()
    }

    /// Succeeded / sent.
    pub fn success_rate(&self) -> f64 {
        self.succeeded() as f64 / self.sent().max(1) as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>6} {:>6} {:>6}",
            "operation", "sent", "ok", "failed"
        )?;
        for (k, (n, ok)) in &self.ops {
            writeln!(f, "{k:<12} {n:>6} {ok:>6} {:>6}", n - ok)?;
        }
        writeln!(
            f,
            "{:<12} {:>6} {:>6} {:>6}  ({:.1} % succeeded)",
            "all",
            self.sent(),
            self.succeeded(),
            self.sent() - self.succeeded(),
            100.0 * self.success_rate()
        )?;
        writeln!(
            f,
            "corrupt {}, lost or torn {}, stray {}, false not-found {}, untyped errors {}",
            self.corrupt.len(),
            self.lost.len(),
            self.stray.len(),
            self.false_not_found.len(),
            self.untyped.len()
        )?;
        for (what, list) in [
            ("failure", &self.failures),
            ("untyped", &self.untyped),
            ("corrupt", &self.corrupt),
            ("lost", &self.lost),
            ("stray", &self.stray),
            ("false not-found", &self.false_not_found),
        ] {
            for line in list {
                writeln!(f, "  {what}: {line}")?;
            }
        }
        Ok(())
    }
}

/// What a path may hold: each possibility is `None` (absent) or the content.
#[derive(Debug, Clone)]
struct Slot(Vec<Option<Bytes>>);

impl Slot {
    fn known(v: Option<Bytes>) -> Self {
        Self(vec![v])
    }
    fn certain(&self) -> Option<&Option<Bytes>> {
        (self.0.len() == 1).then(|| &self.0[0])
    }
    fn surely_exists(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }
    fn may_be(&self, v: &Option<Bytes>) -> bool {
        self.0.iter().any(|p| p == v)
    }
    fn widen(&mut self, v: Option<Bytes>) {
        if !self.may_be(&v) {
            self.0.push(v);
        }
    }
}

struct Run<'a> {
    d: &'a Driver,
    root: &'a str,
    w: &'a Workload,
    gen: DataGen,
    model: BTreeMap<String, Slot>,
    report: Report,
    next_name: usize,
}

/// The operations an error of the workload's operation `op` may name: the call itself,
/// or (for the whole-object calls and a streamed put) the writer or reader steps a
/// driver carries them out with.
fn reported_as(op: &str) -> &'static [Operation] {
    match op {
        "put_content" => &[
            Operation::PutContent,
            Operation::Writer,
            Operation::Write,
            Operation::Commit,
        ],
        "writer" => &[
            Operation::Writer,
            Operation::Write,
            Operation::Commit,
            Operation::Close,
        ],
        "get_content" => &[Operation::GetContent, Operation::Reader],
        "reader" => &[Operation::Reader],
        "stat" => &[Operation::Stat],
        "list" => &[Operation::List],
        "walk" => &[Operation::Walk],
        "rename" => &[Operation::Rename],
        "delete" => &[Operation::Delete],
        _ => &[],
    }
}

impl Run<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let mut b = [0u8; 8];
        self.gen.fill(&mut b);
        (u64::from_le_bytes(b) % n.max(1) as u64) as usize
    }

    /// A path the model has, preferring ones that surely exist.
    fn existing(&mut self) -> Option<String> {
        let sure: Vec<String> = self
            .model
            .iter()
            .filter(|(_, s)| s.surely_exists())
            .map(|(k, _)| k.clone())
            .collect();
        if sure.is_empty() {
            return None;
        }
        let i = self.pick(sure.len());
        sure.into_iter().nth(i)
    }

    fn fresh_path(&mut self) -> String {
        self.next_name += 1;
        let dir = self.pick(4);
        format!("{}/d{dir}/f{:04}", self.root, self.next_name)
    }

    fn size(&mut self) -> usize {
        match self.pick(10) {
            0 => 0,
            1..=5 => 1 + self.pick(64 << 10),
            6..=8 => self.w.part / 2 + self.pick(self.w.part),
            _ => self.w.part * (1 + self.pick(self.w.max_parts)) + self.pick(1000),
        }
    }

    fn count(&mut self, op: &'static str, ok: bool) {
        let e = self.report.ops.entry(op).or_default();
        e.0 += 1;
        if ok {
            e.1 += 1;
        }
    }

    /// Records a failure of `op` on `path`; `sure` says the path certainly existed.
    fn failed(&mut self, op: &'static str, path: &str, e: &StorageError, sure: bool) {
        self.count(op, false);
        let text = e.to_string();
        self.report.failures.push(format!("{op} {path}: {text}"));
        if e.is_not_found() && sure {
            self.report
                .false_not_found
                .push(format!("{op} {path}: {text}"));
        }
        let typed = e.driver() == self.d.name()
            && e.path().is_some_and(|p| !p.is_empty())
            && (!matches!(e, StorageError::Backend { .. })
                || std::error::Error::source(e).is_some())
            && e.operation().is_none_or(|o| reported_as(op).contains(&o));
        if !typed {
            self.report.untyped.push(format!("{op} {path}: {e:?}"));
        }
    }

    fn check_read(&mut self, op: &'static str, path: &str, offset: usize, got: &Bytes) {
        let Some(slot) = self.model.get_mut(path) else {
            return;
        };
        let matching: Vec<Option<Bytes>> = slot
            .0
            .iter()
            .filter(|p| {
                p.as_ref()
                    .is_some_and(|c| c.len() >= offset && c.slice(offset..) == *got)
            })
            .cloned()
            .collect();
        match matching.len() {
            0 => self.report.corrupt.push(format!(
                "{op} {path} at {offset}: {} bytes that are no version of it",
                got.len()
            )),
            // The read tells which version is there.
            1 => *slot = Slot(matching),
            _ => {}
        }
    }

    async fn put(&mut self) {
        let path = if self.model.len() < self.w.files || self.pick(3) == 0 {
            self.fresh_path()
        } else {
            match self.existing() {
                Some(p) => p,
                None => self.fresh_path(),
            }
        };
        let n = self.size();
        let data = self.gen.bytes(n);
        let whole = n <= self.w.part && self.pick(2) == 0;
        let res = if whole {
            self.d.put_content(&path, data.clone()).await
        } else {
            self.stream_put(&path, data.clone()).await
        };
        let op = if whole { "put_content" } else { "writer" };
        let slot = self
            .model
            .entry(path.clone())
            .or_insert_with(|| Slot::known(None));
        match res {
            Ok(()) => {
                *slot = Slot::known(Some(data));
                self.count(op, true);
            }
            Err(e) => {
                slot.widen(Some(data));
                self.failed(op, &path, &e, false);
            }
        }
    }

    async fn stream_put(&self, path: &str, data: Bytes) -> driver_api::Result<()> {
        let mut w = self.d.writer(path, false).await?;
        let piece = (self.w.part / 3).max(1);
        let mut at = 0;
        let res = async {
            while at < data.len() {
                let end = (at + piece).min(data.len());
                w.write(data.slice(at..end)).await?;
                at = end;
            }
            w.commit().await
        }
        .await;
        if res.is_err() {
            // What a caller does: clean up, and report the first error.
            let _ = w.cancel().await;
        }
        res
    }

    async fn get(&mut self) {
        let Some(path) = self.existing() else {
            return;
        };
        let size = self.model[&path]
            .certain()
            .and_then(|c| c.as_ref().map(Bytes::len));
        let ranged = self.pick(2) == 0;
        let offset = match size {
            Some(n) if ranged && n > 0 => self.pick(n + 1),
            _ => 0,
        };
        let res = if ranged {
            self.read_from(&path, offset as u64).await
        } else {
            self.d.get_content(&path).await
        };
        let op = if ranged { "reader" } else { "get_content" };
        match res {
            Ok(got) => {
                self.count(op, true);
                self.check_read(op, &path, offset, &got);
            }
            Err(e) => self.failed(op, &path, &e, true),
        }
    }

    async fn read_from(&self, path: &str, offset: u64) -> driver_api::Result<Bytes> {
        let mut s = self.d.reader(path, offset).await?;
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out.into())
    }

    async fn stat(&mut self) {
        let Some(path) = self.existing() else {
            return;
        };
        match self.d.stat(&path).await {
            Ok(fi) => {
                self.count("stat", true);
                let fits = self.model[&path]
                    .0
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|c| c.len() as u64 == fi.size));
                if !fits || fi.is_dir {
                    self.report.corrupt.push(format!(
                        "stat {path}: size {} (dir {}) fits no version",
                        fi.size, fi.is_dir
                    ));
                }
            }
            Err(e) => self.failed("stat", &path, &e, true),
        }
    }

    async fn list(&mut self) {
        let n = self.pick(4);
        let dir = format!("{}/d{n}", self.root);
        match self.d.list(&dir).await {
            Ok(children) => {
                self.count("list", true);
                let listed: BTreeSet<String> = children.iter().map(|c| c.to_string()).collect();
                self.compare_listing("list", &dir, &listed, |p| {
                    p.rsplit_once('/').is_some_and(|(parent, _)| parent == dir)
                });
            }
            Err(e) if e.is_not_found() => {
                let sure = self
                    .model
                    .iter()
                    .any(|(p, s)| p.starts_with(&format!("{dir}/")) && s.surely_exists());
                if sure {
                    self.failed("list", &dir, &e, true);
                } else {
                    self.count("list", true);
                }
            }
            Err(e) => self.failed("list", &dir, &e, false),
        }
    }

    async fn walk(&mut self) {
        let root = self.root.to_owned();
        match self.d.walk_collect(&root).await {
            Ok(all) => {
                self.count("walk", true);
                let files: BTreeSet<String> = all
                    .iter()
                    .filter(|f| !f.is_dir)
                    .map(|f| f.path.to_string())
                    .collect();
                self.compare_listing("walk", &root, &files, |_| true);
            }
            Err(e) if e.is_not_found() => {
                if self.model.values().any(Slot::surely_exists) {
                    self.failed("walk", &root, &e, true);
                } else {
                    self.count("walk", true);
                }
            }
            Err(e) => self.failed("walk", &root, &e, false),
        }
    }

    /// A listing must hold every path that surely exists and nothing that surely does not.
    fn compare_listing(
        &mut self,
        op: &str,
        at: &str,
        listed: &BTreeSet<String>,
        in_scope: impl Fn(&str) -> bool,
    ) {
        for (p, s) in &self.model {
            if !in_scope(p) {
                continue;
            }
            if s.surely_exists() && !listed.contains(p) {
                self.report
                    .corrupt
                    .push(format!("{op} {at}: {p} missing from the listing"));
            }
            if s.certain() == Some(&None) && listed.contains(p) {
                self.report
                    .corrupt
                    .push(format!("{op} {at}: {p} listed after its delete"));
            }
        }
        for p in listed {
            if !self.model.contains_key(p) {
                self.report
                    .stray
                    .push(format!("{op} {at}: {p} listed, never written"));
            }
        }
    }

    async fn rename(&mut self) {
        let Some(src) = self.existing() else {
            return;
        };
        let dst = if self.pick(3) == 0 {
            self.existing().unwrap_or_else(|| self.fresh_path())
        } else {
            self.fresh_path()
        };
        if src == dst {
            return;
        }
        let res = self.d.rename(&src, &dst).await;
        let moved = self.model[&src].clone();
        match res {
            Ok(()) => {
                self.count("rename", true);
                self.model.insert(src, Slot::known(None));
                self.model.insert(dst, moved);
            }
            Err(e) => {
                self.failed("rename", &src, &e, true);
                // Either nothing happened, or the copy did, or both the copy and the
                // delete did.
                let dslot = self
                    .model
                    .entry(dst.clone())
                    .or_insert_with(|| Slot::known(None));
                for v in moved.0 {
                    dslot.widen(v);
                }
                if let Some(s) = self.model.get_mut(&src) {
                    s.widen(None);
                }
            }
        }
    }

    async fn delete(&mut self) {
        let Some(path) = self.existing() else {
            return;
        };
        match self.d.delete(&path).await {
            Ok(()) => {
                self.count("delete", true);
                self.model.insert(path, Slot::known(None));
            }
            Err(e) => {
                self.failed("delete", &path, &e, true);
                if let Some(s) = self.model.get_mut(&path) {
                    s.widen(None);
                }
            }
        }
    }

    /// With faults off: every path holds a possible content, and nothing else is there.
    async fn verify(&mut self, direct: &Driver) {
        let paths: Vec<String> = self.model.keys().cloned().collect();
        for p in paths {
            let got = match direct.get_content(&p).await {
                Ok(b) => Some(b),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    self.report.lost.push(format!("{p}: unreadable: {e}"));
                    continue;
                }
            };
            if !self.model[&p].may_be(&got) {
                self.report.lost.push(format!(
                    "{p}: holds {} which is no possible outcome",
                    got.map_or("nothing".to_owned(), |b| format!("{} bytes", b.len()))
                ));
            }
        }
        match direct.walk_collect(self.root).await {
            Ok(all) => {
                for f in all.iter().filter(|f| !f.is_dir) {
                    let p = f.path.to_string();
                    if !self.model.contains_key(&p) {
                        self.report.stray.push(format!("{p}: never written"));
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => self.report.lost.push(format!("walk {}: {e}", self.root)),
        }
    }
}

/// Runs `w` through `faulty` under `root`, then checks on `direct` (see the module docs).
/// `faults` turns the faults on (`true`) and off (`false`) around the workload.
pub async fn workload(
    faulty: &Driver,
    direct: &Driver,
    root: &str,
    w: &Workload,
    faults: impl Fn(bool),
) -> Report {
    let mut run = Run {
        d: faulty,
        root,
        w,
        gen: DataGen::new(w.seed),
        model: BTreeMap::new(),
        report: Report::default(),
        next_name: 0,
    };
    faults(true);
    // A pick that finds nothing to act on (a rename with no file yet) sends nothing:
    // draw until `ops` operations were sent.
    for _ in 0..w.ops.saturating_mul(4) {
        if run.report.sent() >= w.ops {
            break;
        }
        match run.pick(20) {
            0..=5 => run.put().await,
            6..=9 => run.get().await,
            10..=11 => run.stat().await,
            12..=13 => run.list().await,
            14 => run.walk().await,
            15..=16 => run.rename().await,
            _ => run.delete().await,
        }
    }
    faults(false);
    run.verify(direct).await;
    run.report
}

/// Reads `path` (which holds `data`) through `faulty` `n` times, the first response of
/// each read cut by `proxy` after a different number of bytes (spread over the body);
/// every read must give exactly `data`. Returns the resets the proxy made.
pub async fn cut_reads(
    faulty: &Driver,
    proxy: &crate::proxy::Proxy,
    path: &str,
    data: &Bytes,
    n: usize,
) -> u64 {
    use crate::proxy::{Fault, FaultKind, FaultPlan};
    let before = proxy.stats().count(FaultKind::ResetResponse);
    for i in 0..n {
        // The head is a few hundred bytes; cuts land from there to the body's end.
        let after = 400 + (data.len() as u64 * i as u64) / n as u64;
        let reset = Fault::ResetResponse { after };
        // The read's first GET is cut; the resumed one goes through.
        let cut = std::sync::atomic::AtomicBool::new(false);
        proxy.set_plan(FaultPlan::scripted(move |r| {
            let first = r.method() == "GET" && !cut.swap(true, std::sync::atomic::Ordering::SeqCst);
            first.then(|| reset.clone())
        }));
        let got = if i % 2 == 0 {
            let mut s = faulty.reader(path, 0).await.expect("reader");
            let mut out = Vec::with_capacity(data.len());
            while let Some(b) = s.next().await {
                out.extend_from_slice(&b.unwrap_or_else(|e| panic!("cut read {i}: {e}")));
            }
            Bytes::from(out)
        } else {
            faulty
                .get_content(path)
                .await
                .unwrap_or_else(|e| panic!("cut get_content {i}: {e}"))
        };
        assert!(got == *data, "cut read {i} (after {after}): wrong bytes");
    }
    proxy.set_plan(crate::proxy::FaultPlan::none());
    proxy.stats().count(FaultKind::ResetResponse) - before
}

/// A read through `faulty` whose response is cut after the object was replaced (through
/// `direct`) ends with [`StorageError::Changed`], having delivered only old bytes.
pub async fn replaced_mid_read(
    faulty: &Driver,
    direct: &Driver,
    proxy: &crate::proxy::Proxy,
    path: &str,
) {
    use crate::proxy::{Fault, FaultPlan};
    let old = DataGen::new(11).bytes(4 << 20);
    let new = DataGen::new(12).bytes(4 << 20);
    direct.put_content(path, old.clone()).await.expect("put");
    proxy.set_plan(FaultPlan::scripted(|r| {
        (r.method() == "GET").then_some(Fault::ResetResponse { after: 1 << 20 })
    }));
    let mut s = faulty.reader(path, 0).await.expect("reader");
    let mut got = Vec::new();
    let first = s.next().await.expect("a first chunk").expect("first chunk");
    got.extend_from_slice(&first);
    direct.put_content(path, new).await.expect("replace");
    proxy.set_plan(FaultPlan::none());
    let end = loop {
        match s.next().await {
            Some(Ok(b)) => got.extend_from_slice(&b),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    assert!(
        old.starts_with(&got),
        "{} bytes delivered, not all of the old object's",
        got.len()
    );
    match end {
        Some(StorageError::Changed { offset, .. }) => assert_eq!(offset, got.len() as u64),
        Some(e) => panic!("expected Changed, got {e:?}"),
        None => panic!(
            "the read ended cleanly after {} bytes of a replaced object",
            got.len()
        ),
    }
    assert!(s.next().await.is_none(), "nothing after the error");
}

/// A fault proxy in front of the server that parameter `url_key` of `params` names (a
/// URL on 127.0.0.1), and driver `name` created twice from `params`: through the proxy
/// (`url_key` pointed at it) and straight to the server. The proxy starts with no faults.
pub async fn behind_proxy(
    name: &str,
    params: driver_api::Parameters,
    url_key: &str,
) -> (crate::proxy::Proxy, Driver, Driver) {
    let url = params
        .get(url_key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{name}: parameter {url_key} is not set"))
        .to_owned();
    let mut url = reqwest::Url::parse(&url).unwrap_or_else(|e| panic!("{url_key}: {e}"));
    let upstream = url
        .socket_addrs(|| None)
        .ok()
        .and_then(|a| a.into_iter().next())
        .unwrap_or_else(|| panic!("{url_key} {url} names no address"));
    let proxy = crate::proxy::Proxy::faults(upstream, crate::proxy::FaultPlan::none())
        .await
        .expect("starting the fault proxy");
    let direct = driver_api::factory::create(name, params.clone())
        .await
        .expect("the driver, straight to the server");
    url.set_port(Some(proxy.addr().port())).ok();
    url.set_host(Some(&proxy.addr().ip().to_string())).ok();
    let faulty = driver_api::factory::create(name, params.with(url_key, url.as_str()))
        .await
        .expect("the driver, through the proxy");
    (proxy, faulty, direct)
}

/// The resilience proof for one HTTP driver (see the module docs): 50 reads cut
/// mid-body, byte-exact; a read of an object replaced mid-stream ends with `Changed`; a
/// seeded workload (`FAULT_OPS` operations, default 200) with 20 % of requests faulted
/// is clean and at least 99 % successful. `params` must have a `rootdirectory` of the
/// test's own; `part` is the driver's part size in `params`. Prints the tables.
pub async fn prove(name: &str, params: driver_api::Parameters, url_key: &str, part: usize) {
    use crate::proxy::FaultPlan;
    let (proxy, faulty, direct) = behind_proxy(name, params, url_key).await;

    let data = DataGen::new(3).bytes(3 * part.max(1 << 20) + 17);
    direct
        .put_content("/blob", data.clone())
        .await
        .expect("put");
    let resets = cut_reads(&faulty, &proxy, "/blob", &data, 50).await;
    println!(
        "{name}: 50 reads of {} bytes, {resets} cut mid-response, all byte-exact",
        data.len()
    );
    assert!(resets >= 50, "every read was cut once ({resets})");
    replaced_mid_read(&faulty, &direct, &proxy, "/replaced").await;
    println!("{name}: a read of an object replaced mid-stream ended with Changed");

    let ops = std::env::var("FAULT_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let w = Workload {
        ops,
        seed: 24,
        part,
        max_parts: 2,
        files: 16,
    };
    let before = proxy.stats();
    let report = workload(&faulty, &direct, "/w", &w, |on| {
        proxy.set_plan(if on {
            FaultPlan::seeded(w.seed, 0.2)
        } else {
            FaultPlan::none()
        })
    })
    .await;
    println!(
        "{name}: workload with 20 % of requests faulted (seed {}):\nbefore it: {before}\nafter it: {}\n{report}",
        w.seed,
        proxy.stats()
    );
    for p in ["/blob", "/replaced", "/w"] {
        direct.delete(p).await.ok();
    }
    assert!(report.clean(), "{report}");
    assert!(report.success_rate() >= 0.99, "{report}");
}

/// How long a driver takes to give up on a server that stopped answering, and whether a
/// stall mid-transfer is absorbed, with `idle_timeout` 2 s and `retry_budget` 3 s (the
/// driver must take the network parameters of `driver_objectstore::network`). Asserts:
/// a `stat` against a black hole fails as retryable within 10 s (`retry_budget` +
/// `idle_timeout` + slack; with `STALL_DEFAULTS` set, the defaults and 70 s); a download
/// that stalls after its first kilobyte is resumed and
/// byte-exact; an upload that stalls is retried and lands, or fails within the bound.
/// Returns the table it prints.
pub async fn stalls(name: &str, params: driver_api::Parameters, url_key: &str) -> String {
    use crate::proxy::{Fault, FaultPlan};
    use std::time::{Duration, Instant};
    // STALL_DEFAULTS=1 measures the driver's default network parameters instead (an
    // unanswered request then takes up to retry_budget + idle_timeout, 60 s).
    let defaults = std::env::var_os("STALL_DEFAULTS").is_some();
    let (params, bound) = if defaults {
        (params, Duration::from_secs(70))
    } else {
        let tight = params
            .with("idle_timeout", "2s")
            .with("retry_budget", "3s")
            .with("connect_timeout", "2s");
        (tight, Duration::from_secs(10))
    };
    let (proxy, faulty, direct) = behind_proxy(name, params, url_key).await;
    let mut table = String::new();
    let data = DataGen::new(5).bytes(1 << 20);
    direct
        .put_content("/stall", data.clone())
        .await
        .expect("put");

    // A server gone silent: connections accepted, nothing answered.
    proxy.set_black_hole(true);
    let t = Instant::now();
    let res = faulty.stat("/stall").await;
    let took = t.elapsed();
    proxy.set_black_hole(false);
    let e = res.expect_err("a stat against a black hole");
    assert!(e.is_retryable(), "{e}");
    assert!(took < bound, "stat against a black hole took {took:?}: {e}");
    note(
        &mut table,
        format!("{name}: stat, black hole: failed in {took:.1?}: {e}"),
    );

    // A put against the same black hole: fails within the bound, and nothing lands.
    proxy.set_black_hole(true);
    let t = Instant::now();
    let res = faulty.put_content("/black-holed", data.clone()).await;
    let took = t.elapsed();
    proxy.set_black_hole(false);
    let e = res.expect_err("a put against a black hole");
    assert!(e.is_retryable(), "{e}");
    assert!(took < bound, "put against a black hole took {took:?}: {e}");
    assert_whole_or_gone(&direct, "/black-holed", &data).await;
    note(
        &mut table,
        format!("{name}: put_content, black hole: failed in {took:.1?}: {e}"),
    );

    // A download that stops moving after 1 KiB of body.
    let once = std::sync::atomic::AtomicBool::new(false);
    proxy.set_plan(FaultPlan::scripted(move |r| {
        (r.method() == "GET" && !once.swap(true, std::sync::atomic::Ordering::SeqCst))
            .then_some(Fault::Stall { after: 2048 })
    }));
    let t = Instant::now();
    let got = faulty.get_content("/stall").await;
    let took = t.elapsed();
    proxy.set_plan(FaultPlan::none());
    let got = got.unwrap_or_else(|e| panic!("a stalled download: {e}"));
    assert!(got == data, "a stalled download resumed with wrong bytes");
    assert!(took < bound, "a stalled download took {took:?}");
    note(
        &mut table,
        format!("{name}: get_content, stalled after 2 KiB: resumed, byte-exact, in {took:.1?}"),
    );

    // An upload that stops moving after 64 KiB.
    let once = std::sync::atomic::AtomicBool::new(false);
    proxy.set_plan(FaultPlan::scripted(move |r| {
        let body = r.body_len().unwrap_or(0) > 100_000;
        (body && !once.swap(true, std::sync::atomic::Ordering::SeqCst))
            .then_some(Fault::StallRequest { after: 64 << 10 })
    }));
    let t = Instant::now();
    let res = faulty.put_content("/stalled-put", data.clone()).await;
    let took = t.elapsed();
    // The proxy holds a stalled connection open until it is dropped (the client's end
    // closes without a word to it), and some emulators serve nothing else meanwhile
    // (fake-gcs-server locks its store while it reads an upload).
    drop(proxy);
    assert!(took < bound, "a stalled upload took {took:?}: {res:?}");
    match res {
        Ok(()) => {
            let back = direct.get_content("/stalled-put").await.expect("read back");
            assert!(back == data, "a stalled upload landed wrong bytes");
            note(
                &mut table,
                format!(
                    "{name}: put_content, stalled after 64 KiB: retried, landed, in {took:.1?}"
                ),
            );
        }
        Err(e) => {
            assert!(e.is_retryable(), "{e}");
            assert_whole_or_gone(&direct, "/stalled-put", &data).await;
            note(
                &mut table,
                format!("{name}: put_content, stalled after 64 KiB: failed in {took:.1?}: {e}"),
            );
        }
    }
    for p in ["/stall", "/stalled-put"] {
        direct.delete(p).await.ok();
    }
    table
}

/// A backend killed mid-upload, with the driver's default network parameters: a writer
/// that has sent some parts loses its server (every connection closed, new ones refused);
/// the next write or the commit fails with a retryable error within 10 s, and nothing
/// is committed. `part` is the driver's part size in `params`. Returns the line it prints.
pub async fn killed(
    name: &str,
    params: driver_api::Parameters,
    url_key: &str,
    part: usize,
) -> String {
    use std::time::{Duration, Instant};
    let (proxy, faulty, direct) = behind_proxy(name, params, url_key).await;
    let chunk = DataGen::new(9).bytes(part.max(1 << 20));
    let mut w = faulty.writer("/killed", false).await.expect("writer");
    for _ in 0..2 {
        w.write(chunk.clone())
            .await
            .expect("a part before the kill");
    }
    drop(proxy);
    let t = Instant::now();
    let mut res = Ok(());
    for _ in 0..4 {
        res = w.write(chunk.clone()).await;
        if res.is_err() {
            break;
        }
    }
    let res = match res {
        Ok(()) => w.commit().await,
        Err(e) => Err(e),
    };
    let took = t.elapsed();
    let e = res.expect_err("an upload whose backend was killed");
    assert!(e.is_retryable(), "{e}");
    assert!(
        took < Duration::from_secs(10),
        "an upload whose backend was killed took {took:?} to fail: {e}"
    );
    w.cancel().await.ok();
    match direct.stat("/killed").await {
        Err(e) if e.is_not_found() => {}
        Ok(info) => panic!(
            "/killed was committed ({} bytes) although its writer failed",
            info.size
        ),
        Err(e) => panic!("stat /killed on the server: {e}"),
    }
    let mut line =
        format!("{name}: writer, backend killed after 2 parts: failed in {took:.1?}: {e}\n");
    line.push_str(&leftovers(name, &direct, &chunk).await);
    print!("{line}");
    line
}

/// What interrupted uploads leave is found by `uploads` and purged, and nothing else is
/// touched: run after [`killed`] (whose writer could not abort its upload), with a writer
/// closed over committed content (parked) beside it. Where the service lists its uploads
/// (S3 and OSS multipart uploads, Azure blobs with only uncommitted blocks) or records
/// each upload when it starts (GCS sessions, Swift segments), the killed writer's upload
/// is found as an orphan. Returns the line it
/// prints.
pub async fn leftovers(name: &str, direct: &Driver, chunk: &Bytes) -> String {
    use driver_api::LeftoverKind;
    let keep = Bytes::from_static(b"committed, never to be purged");
    direct
        .put_content("/keep", keep.clone())
        .await
        .expect("put");
    direct
        .put_content("/parked", keep.clone())
        .await
        .expect("put");
    let mut w = direct.writer("/parked", false).await.expect("writer");
    w.write(chunk.clone()).await.expect("write");
    w.close().await.expect("close");

    let found = direct.uploads("/").await.expect("uploads");
    let kinds: Vec<String> = found
        .iter()
        .map(|l| format!("{} {} {}", l.kind, l.path, l.id))
        .collect();
    assert!(
        found
            .iter()
            .any(|l| l.path.as_str() == "/parked" && l.kind == LeftoverKind::Parked),
        "the closed writer's upload is not listed: {kinds:?}"
    );
    let orphan = found
        .iter()
        .any(|l| l.path.as_str() == "/killed" && l.kind == LeftoverKind::Orphan);
    for l in &found {
        assert!(
            l.path.as_str() != "/keep",
            "committed content listed as an upload: {kinds:?}"
        );
        direct
            .purge_upload(l)
            .await
            .unwrap_or_else(|e| panic!("purge {} {}: {e}", l.kind, l.path));
    }
    let after = direct.uploads("/").await.expect("uploads");
    assert!(after.is_empty(), "left after purge: {after:?}");
    assert_eq!(direct.get_content("/keep").await.expect("get"), keep);
    assert_eq!(
        direct.get_content("/parked").await.expect("get"),
        keep,
        "purging a parked upload touched the committed content"
    );
    for p in ["/keep", "/parked"] {
        direct.delete(p).await.ok();
    }
    format!(
        "{name}: uploads found {} ({}), all purged; committed content untouched; killed writer's upload {}\n",
        found.len(),
        kinds.join(", "),
        if orphan { "found as an orphan" } else { "not listable on this service" }
    )
}

/// Prints `line` at once (a later step may hang or panic) and keeps it for the table.
fn note(table: &mut String, line: String) {
    println!("{line}");
    table.push_str(&line);
    table.push('\n');
}

/// Asserts that a put whose outcome the driver could not learn (it timed out) left
/// `path` either absent or holding exactly `data`: a request given up on may still
/// complete on the server, but never in part.
async fn assert_whole_or_gone(direct: &Driver, path: &str, data: &[u8]) {
    match direct.get_content(path).await {
        Err(e) if e.is_not_found() => {}
        Ok(got) => assert!(
            got == data,
            "{path} holds {} other bytes after a failed put",
            got.len()
        ),
        Err(e) => panic!("read {path} on the server: {e}"),
    }
}
