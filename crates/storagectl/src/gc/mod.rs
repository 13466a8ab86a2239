//! `storagectl gc`: Distribution's mark-and-sweep garbage collection over any driver, with
//! Distribution v3's semantics (`registry/storage/garbagecollect.go`), concurrent reads,
//! flat walks, and a sweep that is safe while the registry keeps serving.
//!
//! The phases:
//! 1. **Scan** `repositories/` in one walk: every repository (a directory with `_layers`,
//!    as Distribution enumerates them), its manifest revisions, tags and layer links, each
//!    with its modification time.
//! 2. **Tags** (only with `--delete-untagged`): each tag's `current/link` read once.
//! 3. **Mark**, `--jobs` manifests at once: every manifest revision (but untagged ones with
//!    `--delete-untagged`) is marked with its references; an index's child manifests that
//!    exist in the repository are marked recursively. An untagged manifest that a marked
//!    index references is kept (Distribution 2.8 deletes it: its v3 fix is followed).
//! 4. **Scan** `blobs/` in one walk: every blob not marked is unreferenced.
//! 5. **Eligible**: unreferenced blobs, untagged manifests and the layer links of
//!    unreferenced blobs, as Distribution lists them, less what is younger than
//!    `--min-age` (a blob whose data or any layer link, or a manifest whose revision link,
//!    changed within it: an upload, a cross-repository mount or a push in flight).
//! 6. **Re-mark** (real runs): `repositories/` is walked again; manifests that appeared and
//!    tags that moved since the first scan are marked and spare what they reference.
//! 7. **Sweep**: manifests (their revision and tag index entries), then blobs, then layer
//!    links, `--jobs` deletes at once.
//!
//! Memory: the marked set holds one [`Digest`] per marked blob (32 bytes of sha256 in a
//! hash set: about 40 bytes each), the scan one entry per manifest revision, tag and layer
//! link (a digest and a time: about 56 bytes), and the eligible lists one entry each;
//! never anything proportional to the blobs' bytes, and the blob walk keeps only
//! unreferenced blobs.

pub mod layout;
pub mod manifest;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use driver_api::{Driver, FileInfo, StorageError, WalkControl, WalkOptions};
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use std::io::Write as _;

use crate::{emit_json, App, CliError, CliResult};
use layout::{Digest, RepoEntry};

/// `storagectl gc` options.
#[derive(Debug, Clone)]
pub struct GcArgs {
    /// Report only; write nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag names (and what only they reference).
    pub delete_untagged: bool,
    /// Spare what changed more recently than this.
    pub min_age: Duration,
    /// Reads and deletes at once.
    pub jobs: usize,
}

/// One repository as the scan found it.
#[derive(Debug, Default)]
struct Repo {
    /// Has a `_layers` directory (Distribution's test for a repository).
    is_repo: bool,
    /// Manifest revisions (link present) and the link's time.
    revisions: HashMap<Digest, SystemTime>,
    /// Every tag (directories below `_manifests/tags`).
    tags: Vec<String>,
    /// Tag index entries: (tag, revision).
    tag_index: Vec<(String, Digest)>,
    /// Tags with a `current/link`, and its time.
    current: Vec<(String, SystemTime)>,
    /// Layer links and their times.
    layers: Vec<(Digest, SystemTime)>,
}

/// Walks `root`; a missing root is empty.
async fn walk_files(
    d: &Driver,
    root: &str,
    f: impl FnMut(&FileInfo) -> WalkControl + Send,
) -> Result<(), StorageError> {
    let res = d.walk(root, &WalkOptions::default(), f).await;
    match res {
        Err(StorageError::PathNotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Phase 1 (and 6): every repository below `repositories/`.
///
/// Tags are read only `with_tags` (`--delete-untagged`: without it no tag matters, and
/// Distribution reads none either).
async fn scan_repositories(
    d: &Driver,
    bar: &indicatif::ProgressBar,
    with_tags: bool,
) -> Result<BTreeMap<String, Repo>, StorageError> {
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    walk_files(d, &layout::repositories_root(), |fi| {
        bar.inc(1);
        let Some((name, entry)) = layout::repo_entry(fi.path.as_str()) else {
            return WalkControl::Continue;
        };
        let repo = match repos.get_mut(name) {
            Some(r) => r,
            None => repos.entry(name.to_owned()).or_default(),
        };
        match entry {
            // A layer link or tag index entry is taken from its directory, which is not
            // entered: on a filesystem that saves a directory read and a stat per link,
            // most of a repository's files (the `link` inside is taken instead where a
            // walk reports no directories).
            RepoEntry::Layers(link) => {
                repo.is_repo = true;
                if let Some(dg) = link {
                    if repo.layers.last().map(|(l, _)| l) != Some(&dg) {
                        repo.layers.push((dg, fi.mod_time));
                    }
                    if fi.is_dir {
                        return WalkControl::SkipDir;
                    }
                }
            }
            RepoEntry::Revision(dg) if !fi.is_dir => {
                repo.revisions.insert(dg, fi.mod_time);
            }
            RepoEntry::Tags if !with_tags && fi.is_dir => return WalkControl::SkipDir,
            RepoEntry::Tag {
                name,
                current,
                index,
            } => {
                // A walk reports a tag's entries together.
                if repo.tags.last() != Some(&name) {
                    repo.tags.push(name.clone());
                }
                if let Some(dg) = index {
                    let entry = (name, dg);
                    if repo.tag_index.last() != Some(&entry) {
                        repo.tag_index.push(entry);
                    }
                    if fi.is_dir {
                        return WalkControl::SkipDir;
                    }
                } else if current && !fi.is_dir {
                    repo.current.push((name, fi.mod_time));
                }
            }
            _ => {}
        }
        WalkControl::Continue
    })
    .await?;
    repos.retain(|_, r| r.is_repo);
    Ok(repos)
}

/// Reads a link file's digest; `None` if it is gone or does not hold a digest.
async fn read_link(d: &Driver, path: &str) -> Result<Option<Digest>, StorageError> {
    match d.get_content(path).await {
        Ok(b) => Ok(std::str::from_utf8(&b).ok().and_then(Digest::parse)),
        Err(StorageError::PathNotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The marked set, shared by the mark tasks.
#[derive(Default)]
struct Marks {
    set: Mutex<HashSet<Digest>>,
}

impl Marks {
    /// Marks `d`; true if it was not marked before.
    fn mark(&self, d: &Digest) -> bool {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if set.contains(d) {
            false
        } else {
            set.insert(d.clone());
            true
        }
    }

    fn contains(&self, d: &Digest) -> bool {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(d)
    }
}

/// What marking one manifest found.
struct Marked {
    repo: String,
    manifest: Digest,
    /// Digests this manifest newly marked (Distribution prints "marking blob" for them).
    blobs: Vec<Digest>,
    /// False if its blob is gone (Distribution skips such a revision).
    present: bool,
}

/// Marks manifest `dg` of `repo` and what it references, recursing into child manifests
/// of an index that exist in the repository (Distribution v3's
/// `markManifestReferences`).
async fn mark_manifest(
    d: &Driver,
    marks: &Marks,
    repo: &str,
    revisions: &HashMap<Digest, SystemTime>,
    dg: &Digest,
) -> CliResult<Marked> {
    let mut out = Marked {
        repo: repo.to_owned(),
        manifest: dg.clone(),
        blobs: Vec::new(),
        present: true,
    };
    let content = match d.get_content(&dg.blob_data()).await {
        Ok(c) => c,
        // A revision whose blob is gone: Distribution's enumeration skips it.
        Err(StorageError::PathNotFound { .. }) => {
            out.present = false;
            return Ok(out);
        }
        Err(e) => return Err(e.into()),
    };
    marks.mark(dg);
    let mut queue = vec![(dg.clone(), content)];
    while let Some((m, content)) = queue.pop() {
        let refs = manifest::references(&content).map_err(|e| {
            CliError::Failed(format!(
                "repository {repo}: manifest {m}: {e} (nothing was deleted)"
            ))
        })?;
        for r in refs.digests {
            if !marks.mark(&r) {
                continue;
            }
            out.blobs.push(r.clone());
            if revisions.contains_key(&r) {
                match d.get_content(&r.blob_data()).await {
                    Ok(c) => queue.push((r, c)),
                    Err(StorageError::PathNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(out)
}

/// An untagged manifest and the repository's tags (whose index entries for it go too).
#[derive(Debug, Clone)]
struct ManifestDel {
    repo: String,
    digest: Digest,
    tags: Vec<String>,
}

/// Tagged digests per repository: each tag's `current/link` read once.
async fn read_tags(
    d: &Driver,
    repos: &BTreeMap<String, Repo>,
    jobs: usize,
) -> CliResult<HashMap<String, HashSet<Digest>>> {
    // Owned items: a stream over borrowing iterator adapters is not `Send` for every
    // lifetime the spawned task needs.
    let mut reads: Vec<(String, String)> = Vec::new();
    for (name, r) in repos {
        reads.extend(r.current.iter().map(|(tag, _)| (name.clone(), tag.clone())));
    }
    let results: Vec<(String, Result<Option<Digest>, StorageError>)> = futures::stream::iter(reads)
        .map(|(name, tag)| {
            async move {
                let res = read_link(d, &layout::tag_current(&name, &tag)).await;
                (name, res)
            }
            .boxed()
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    let mut tagged: HashMap<String, HashSet<Digest>> = HashMap::new();
    for (name, res) in results {
        if let Some(dg) = res? {
            tagged.entry(name).or_default().insert(dg);
        }
    }
    Ok(tagged)
}

/// The result of a run, for both output forms.
#[derive(Default)]
struct Report {
    repositories: usize,
    manifests: usize,
    marked: Vec<Marked>,
    marked_all: Vec<Digest>,
    blobs_seen: u64,
    eligible_blobs: Vec<Digest>,
    eligible_manifests: Vec<ManifestDel>,
    eligible_links: Vec<(String, Digest)>,
    young_blobs: usize,
    young_manifests: usize,
    remarked: usize,
    deleted: [usize; 3],
    failed: Vec<String>,
    /// Manifests that appeared during the sweep and reference a blob it deleted.
    broken: Vec<String>,
    phases: Vec<(&'static str, Duration)>,
}

/// One run, phase by phase (the order [`Collector::run`] keeps; tests step through it).
struct Collector<'a> {
    d: &'a Driver,
    args: GcArgs,
    progress: crate::progress::Progress,
    interrupt: crate::interrupt::Interrupt,
    /// Spare what changed after this.
    cutoff: SystemTime,
    repos: BTreeMap<String, Repo>,
    marks: Marks,
    untagged: Vec<ManifestDel>,
    unreferenced: HashSet<Digest>,
    report: Report,
    clock: Instant,
}

impl<'a> Collector<'a> {
    fn new(
        d: &'a Driver,
        args: GcArgs,
        progress: crate::progress::Progress,
        interrupt: crate::interrupt::Interrupt,
    ) -> Self {
        let now = SystemTime::now();
        Collector {
            d,
            cutoff: now.checked_sub(args.min_age).unwrap_or(now),
            args,
            progress,
            interrupt,
            repos: BTreeMap::new(),
            marks: Marks::default(),
            untagged: Vec::new(),
            unreferenced: HashSet::new(),
            report: Report::default(),
            clock: Instant::now(),
        }
    }

    fn jobs(&self) -> usize {
        self.args.jobs.max(1)
    }

    fn phase_done(&mut self, name: &'static str) -> CliResult {
        self.report.phases.push((name, self.clock.elapsed()));
        self.clock = Instant::now();
        if self.interrupt.is_set() {
            return Err(CliError::Interrupted);
        }
        Ok(())
    }

    async fn run(mut self) -> CliResult<Report> {
        self.scan().await?;
        self.mark().await?;
        self.scan_blobs().await?;
        if !self.args.dry_run {
            self.remark().await?;
            self.sweep().await?;
            self.check_after().await?;
        }
        Ok(self.finish())
    }

    /// Phase 1: the repositories.
    async fn scan(&mut self) -> CliResult {
        self.repos = self.rescan("scanning repositories").await?;
        self.report.repositories = self.repos.len();
        self.report.manifests = self.repos.values().map(|r| r.revisions.len()).sum();
        self.phase_done("scan repositories")
    }

    /// Phases 2 and 3: tags (with `--delete-untagged`), then marking.
    async fn mark(&mut self) -> CliResult {
        let tagged = if self.args.delete_untagged {
            read_tags(self.d, &self.repos, self.jobs()).await?
        } else {
            HashMap::new()
        };
        let mut to_mark: Vec<(String, Digest)> = Vec::new();
        for (name, r) in &self.repos {
            let mut revs: Vec<(&Digest, &SystemTime)> = r.revisions.iter().collect();
            revs.sort();
            for (dg, linked) in revs {
                let is_tagged = tagged.get(name).is_some_and(|t| t.contains(dg));
                if !self.args.delete_untagged || is_tagged {
                    to_mark.push((name.clone(), dg.clone()));
                } else if *linked > self.cutoff {
                    // Untagged but linked within --min-age (a push between its manifest
                    // and its tag): kept, with what it references.
                    self.report.young_manifests += 1;
                    to_mark.push((name.clone(), dg.clone()));
                } else {
                    // Distribution's `RemoveManifest` deletes the revision's entry in
                    // every tag's index; here only those the scan found.
                    let tags = r
                        .tag_index
                        .iter()
                        .filter(|(_, rev)| rev == dg)
                        .map(|(t, _)| t.clone())
                        .collect();
                    self.untagged.push(ManifestDel {
                        repo: name.clone(),
                        digest: dg.clone(),
                        tags,
                    });
                }
            }
        }
        let bar = self.progress.items(to_mark.len() as u64, "marking");
        let (d, marks, repos) = (self.d, &self.marks, &self.repos);
        let mut stream = futures::stream::iter(to_mark)
            .map(|(name, dg)| {
                let bar = &bar;
                async move {
                    let m = match repos.get(&name) {
                        Some(r) => mark_manifest(d, marks, &name, &r.revisions, &dg).await,
                        None => Err(CliError::Failed(format!("repository {name} vanished"))),
                    };
                    bar.inc(1);
                    m
                }
                .boxed()
            })
            .buffer_unordered(self.jobs());
        let mut marked = Vec::new();
        while let Some(m) = stream.next().await {
            if self.interrupt.is_set() {
                return Err(CliError::Interrupted);
            }
            marked.push(m?);
        }
        drop(stream);
        bar.finish_and_clear();
        self.report.marked = marked;
        // An untagged manifest that a marked index references stays (Distribution v3's
        // `unmarkReferencedManifest`).
        let marks = &self.marks;
        self.untagged.retain(|m| !marks.contains(&m.digest));
        self.phase_done("mark")
    }

    /// Phases 4 and 5: every blob; the unreferenced ones old enough are eligible.
    async fn scan_blobs(&mut self) -> CliResult {
        let bar = self.progress.counter("scanning blobs");
        let mut unreferenced: Vec<(Digest, SystemTime)> = Vec::new();
        let mut seen = 0u64;
        let marks = &self.marks;
        walk_files(self.d, &layout::blobs_root(), |fi| {
            bar.inc(1);
            if !fi.is_dir {
                if let Some(dg) = layout::blob_of(fi.path.as_str()) {
                    seen += 1;
                    if !marks.contains(&dg) {
                        unreferenced.push((dg, fi.mod_time));
                    }
                }
            }
            WalkControl::Continue
        })
        .await?;
        bar.finish_and_clear();
        self.report.blobs_seen = seen;
        // A blob written, or linked into a repository (an upload committed, a mount),
        // within --min-age is spared.
        let cutoff = self.cutoff;
        let young_links: HashSet<&Digest> = self
            .repos
            .values()
            .flat_map(|r| r.layers.iter())
            .filter(|(_, t)| *t > cutoff)
            .map(|(dg, _)| dg)
            .collect();
        let mut young = 0;
        for (dg, t) in unreferenced {
            if t <= cutoff && !young_links.contains(&dg) {
                self.unreferenced.insert(dg);
            } else {
                young += 1;
            }
        }
        self.report.young_blobs = young;
        self.phase_done("scan blobs")
    }

    /// A walk of the repositories (phase 1, and again for phases 6 and 8).
    async fn rescan(&self, what: &str) -> CliResult<BTreeMap<String, Repo>> {
        let bar = self.progress.counter(what);
        let now = scan_repositories(self.d, &bar, self.args.delete_untagged).await?;
        bar.finish_and_clear();
        Ok(now)
    }

    /// Phase 6: manifests that appeared, and tags that moved, since the first scan are
    /// marked; blobs linked meanwhile are spared. What changed is told by the first
    /// scan (a link that is new or whose time differs), not by comparing clocks.
    async fn remark(&mut self) -> CliResult {
        if self.unreferenced.is_empty() && self.untagged.is_empty() {
            return Ok(());
        }
        let now = self.rescan("re-checking repositories").await?;
        let retagged = if self.args.delete_untagged {
            let moved: BTreeMap<String, Repo> = now
                .iter()
                .map(|(name, r)| {
                    let before = self.repos.get(name);
                    let current = r
                        .current
                        .iter()
                        .filter(|c| before.is_none_or(|b| !b.current.contains(c)))
                        .cloned()
                        .collect();
                    (
                        name.clone(),
                        Repo {
                            current,
                            ..Repo::default()
                        },
                    )
                })
                .collect();
            read_tags(self.d, &moved, self.jobs()).await?
        } else {
            HashMap::new()
        };
        let mut fresh: Vec<(&str, &Repo, Digest)> = Vec::new();
        for (name, r) in &now {
            let before = self.repos.get(name);
            for (dg, t) in &r.revisions {
                let new = before.is_none_or(|b| b.revisions.get(dg) != Some(t));
                let retag = retagged.get(name).is_some_and(|s| s.contains(dg));
                if (new || retag) && !self.marks.contains(dg) {
                    fresh.push((name, r, dg.clone()));
                }
            }
            for (dg, t) in &r.layers {
                if *t > self.cutoff {
                    self.unreferenced.remove(dg);
                }
            }
        }
        self.report.remarked = fresh.len();
        for (name, r, dg) in fresh {
            mark_manifest(self.d, &self.marks, name, &r.revisions, &dg).await?;
        }
        let marks = &self.marks;
        self.untagged.retain(|m| !marks.contains(&m.digest));
        self.unreferenced.retain(|dg| !marks.contains(dg));
        self.repos = now;
        self.phase_done("re-mark")
    }

    /// What a real run deletes, or a dry run reports: blobs, manifests, layer links.
    fn eligible(&self) -> (Vec<Digest>, Vec<(String, Digest)>) {
        let mut blobs: Vec<Digest> = self.unreferenced.iter().cloned().collect();
        blobs.sort();
        let mut links: Vec<(String, Digest)> = self
            .repos
            .iter()
            .flat_map(|(name, r)| {
                r.layers
                    .iter()
                    .filter(|(dg, _)| self.unreferenced.contains(dg))
                    .map(move |(dg, _)| (name.clone(), dg.clone()))
            })
            .collect();
        links.sort();
        (blobs, links)
    }

    /// Phase 7: manifests, then blobs, then layer links (Distribution's order), each kind
    /// finished before the next starts.
    async fn sweep(&mut self) -> CliResult {
        let (blobs, links) = self.eligible();
        let mut kinds: [Vec<Vec<String>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for m in &self.untagged {
            let mut p: Vec<String> = m
                .tags
                .iter()
                .map(|t| layout::tag_index_dir(&m.repo, t, &m.digest))
                .collect();
            p.push(layout::revision_dir(&m.repo, &m.digest));
            kinds[0].push(p);
        }
        kinds[1].extend(blobs.iter().map(|b| vec![b.blob_dir()]));
        kinds[2].extend(
            links
                .iter()
                .map(|(repo, dg)| vec![layout::layer_link(repo, dg)]),
        );
        let total = kinds.iter().map(Vec::len).sum::<usize>();
        let bar = self.progress.items(total as u64, "deleting");
        let d = self.d;
        for (kind, batch) in kinds.into_iter().enumerate() {
            let mut stream = futures::stream::iter(batch)
                .map(|ps| {
                    async move {
                        for p in &ps {
                            match d.delete(p).await {
                                Ok(()) | Err(StorageError::PathNotFound { .. }) => {}
                                Err(e) => return Err(format!("{p}: {e}")),
                            }
                        }
                        Ok(())
                    }
                    .boxed()
                })
                .buffer_unordered(self.jobs());
            while let Some(res) = stream.next().await {
                bar.inc(1);
                match res {
                    Ok(()) => self.report.deleted[kind] += 1,
                    Err(e) => {
                        tracing::error!(target: "storagectl::gc", "deleting {e}");
                        self.report.failed.push(e);
                    }
                }
                if self.interrupt.is_set() {
                    return Err(CliError::Interrupted);
                }
            }
        }
        bar.finish_and_clear();
        self.phase_done("sweep")
    }

    /// Phase 8: a manifest that landed after the re-mark and references a blob the sweep
    /// deleted (the window --min-age cannot close: a push reusing a blob that was
    /// already unreferenced and old) is reported, so it can be pushed again.
    async fn check_after(&mut self) -> CliResult {
        if self.unreferenced.is_empty() && self.untagged.is_empty() {
            return Ok(());
        }
        let now = self.rescan("checking new manifests").await?;
        let deleted: HashSet<(&str, &Digest)> = self
            .untagged
            .iter()
            .map(|m| (m.repo.as_str(), &m.digest))
            .collect();
        for (name, r) in &now {
            let before = self.repos.get(name);
            // A tag moved during the sweep onto a manifest it deleted.
            for c in &r.current {
                if before.is_some_and(|b| b.current.contains(c)) {
                    continue;
                }
                let Some(dg) = read_link(self.d, &layout::tag_current(name, &c.0)).await? else {
                    continue;
                };
                if deleted.contains(&(name.as_str(), &dg)) || self.unreferenced.contains(&dg) {
                    self.report.broken.push(format!(
                        "{name}:{} was tagged during the sweep as {dg}, which it deleted: \
                         push that image again",
                        c.0
                    ));
                }
            }
            for (dg, t) in &r.revisions {
                if before.is_some_and(|b| b.revisions.get(dg) == Some(t)) {
                    continue;
                }
                if self.unreferenced.contains(dg) {
                    // An untagged manifest tagged again, or pushed again, during the sweep.
                    self.report.broken.push(format!(
                        "{name}@{dg} was linked during the sweep, which deleted it: push \
                         that image again"
                    ));
                    continue;
                }
                let content = match self.d.get_content(&dg.blob_data()).await {
                    Ok(c) => c,
                    Err(StorageError::PathNotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let Ok(refs) = manifest::references(&content) else {
                    continue;
                };
                for r in refs
                    .digests
                    .iter()
                    .filter(|r| self.unreferenced.contains(r))
                {
                    self.report.broken.push(format!(
                        "{name}@{dg} was pushed during the sweep and references {r}, which \
                         it deleted: push that image again"
                    ));
                }
            }
        }
        self.phase_done("check")
    }

    fn finish(mut self) -> Report {
        let (blobs, links) = self.eligible();
        self.report.eligible_blobs = blobs;
        self.report.eligible_links = links;
        self.report.eligible_manifests = std::mem::take(&mut self.untagged);
        let mut all: Vec<Digest> = self
            .marks
            .set
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .collect();
        all.sort();
        self.report.marked_all = all;
        self.report
            .marked
            .sort_by(|a, b| (&a.repo, &a.manifest).cmp(&(&b.repo, &b.manifest)));
        self.report
    }
}

/// `storagectl gc`.
pub async fn command(app: &App, args: GcArgs) -> CliResult {
    let d = app.driver().await?;
    let collector = Collector::new(&d, args.clone(), app.progress, app.interrupt.clone());
    let report = collector.run().await?;
    if app.json {
        emit_json(&to_json(&report, &args))?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        match write_text(&mut out, &report, &args).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(CliError::io("stdout", e)),
        }
    }
    if !report.broken.is_empty() {
        for b in &report.broken {
            eprintln!("storagectl: gc: {b}");
        }
    }
    match (report.failed.len(), report.broken.len()) {
        (0, 0) => Ok(()),
        (f, b) => Err(CliError::Failed(format!(
            "{f} deletion(s) failed, {b} manifest(s) pushed during the sweep lost a blob"
        ))),
    }
}

/// Distribution's lines, written as they are made (a large registry prints millions).
fn write_text(out: &mut impl std::io::Write, r: &Report, args: &GcArgs) -> std::io::Result<()> {
    let mut last = "";
    for m in r.marked.iter().filter(|m| m.present) {
        if m.repo != last {
            writeln!(out, "{}", m.repo)?;
            last = &m.repo;
        }
        writeln!(out, "{}: marking manifest {}", m.repo, m.manifest)?;
        for b in &m.blobs {
            writeln!(out, "{}: marking blob {b}", m.repo)?;
        }
    }
    for m in &r.eligible_manifests {
        writeln!(
            out,
            "manifest eligible for deletion: {} ({})",
            m.digest, m.repo
        )?;
    }
    writeln!(
        out,
        "\n{} blobs marked, {} blobs and {} manifests eligible for deletion",
        r.marked_all.len(),
        r.eligible_blobs.len(),
        r.eligible_manifests.len()
    )?;
    for b in &r.eligible_blobs {
        writeln!(out, "blob eligible for deletion: {b}")?;
    }
    for (repo, dg) in &r.eligible_links {
        writeln!(out, "{repo}: layer link eligible for deletion: {dg}")?;
    }
    if r.young_blobs + r.young_manifests > 0 {
        writeln!(
            out,
            "{} blobs and {} manifests unreferenced but changed within --min-age {}: kept",
            r.young_blobs,
            r.young_manifests,
            humantime(args.min_age)
        )?;
    }
    if r.remarked > 0 {
        writeln!(
            out,
            "{} manifests pushed during the run were marked before the sweep",
            r.remarked
        )?;
    }
    if !args.dry_run {
        writeln!(
            out,
            "deleted {} manifests, {} blobs, {} layer links; {} failed",
            r.deleted[0],
            r.deleted[1],
            r.deleted[2],
            r.failed.len()
        )?;
    }
    Ok(())
}

fn to_json(r: &Report, args: &GcArgs) -> Value {
    let marked: Vec<String> = r.marked_all.iter().map(ToString::to_string).collect();
    json!({
        "dry_run": args.dry_run,
        "delete_untagged": args.delete_untagged,
        "min_age_seconds": args.min_age.as_secs(),
        "repositories": r.repositories,
        "manifests": r.manifests,
        "blobs": r.blobs_seen,
        "marked": marked,
        "eligible": {
            "blobs": r.eligible_blobs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "manifests": r.eligible_manifests.iter().map(|m| json!({
                "repository": m.repo,
                "digest": m.digest.to_string(),
                "tags": m.tags,
            })).collect::<Vec<_>>(),
            "layer_links": r.eligible_links.iter().map(|(repo, dg)| json!({
                "repository": repo,
                "digest": dg.to_string(),
            })).collect::<Vec<_>>(),
        },
        "kept_younger_than_min_age": {
            "blobs": r.young_blobs,
            "manifests": r.young_manifests,
        },
        "remarked": r.remarked,
        "deleted": {
            "manifests": r.deleted[0],
            "blobs": r.deleted[1],
            "layer_links": r.deleted[2],
        },
        "failed": r.failed,
        "broken": r.broken,
        "seconds": r.phases.iter().map(|(n, t)| ((*n).to_owned(), json!(t.as_secs_f64())))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// A duration in Go's notation (`1h0m0s` is printed `1h`, `90s` `1m30s`).
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sha2_free::sha256;

    /// A digest without a hashing crate: the tests need distinct, well-formed digests,
    /// not real ones (gc never hashes content).
    mod sha2_free {
        pub fn sha256(data: &[u8]) -> String {
            // FNV-1a over the content, stretched to 64 hex digits.
            let mut out = String::new();
            for round in 0u64..4 {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
                for b in data {
                    h ^= u64::from(*b);
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
                out.push_str(&format!("{h:016x}"));
            }
            format!("sha256:{out}")
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    struct Store {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        d: Driver,
    }

    impl Store {
        fn new() -> Store {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_path_buf();
            let d = Driver::new(driver_filesystem::FilesystemDriver::new(&root, 4));
            Store { _dir: dir, root, d }
        }

        async fn blob(&self, data: &[u8]) -> Digest {
            let dg = Digest::parse(&sha256(data)).unwrap();
            self.d
                .put_content(&dg.blob_data(), data.to_vec())
                .await
                .unwrap();
            dg
        }

        async fn link(&self, path: &str, dg: &Digest) {
            self.d.put_content(path, dg.to_string()).await.unwrap();
        }

        /// Pushes an image as Distribution does: blobs and layer links, the manifest
        /// blob and its revision link, the tag's current and index links.
        async fn image(
            &self,
            repo: &str,
            tag: Option<&str>,
            layers: &[&str],
        ) -> (Digest, Vec<Digest>) {
            let mut blobs = Vec::new();
            for l in layers {
                let dg = self.blob(l.as_bytes()).await;
                self.link(&layout::layer_link(repo, &dg), &dg).await;
                blobs.push(dg);
            }
            let config = self.blob(format!("config of {layers:?}").as_bytes()).await;
            self.link(&layout::layer_link(repo, &config), &config).await;
            let m = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"digest": config.to_string(), "size": 1},
                "layers": blobs.iter().map(|b| json!({"digest": b.to_string(), "size": 1}))
                    .collect::<Vec<_>>(),
            });
            blobs.push(config);
            let mdg = self.manifest(repo, tag, &m).await;
            (mdg, blobs)
        }

        async fn manifest(&self, repo: &str, tag: Option<&str>, m: &Value) -> Digest {
            let mdg = self.blob(m.to_string().as_bytes()).await;
            self.link(&format!("{}/link", layout::revision_dir(repo, &mdg)), &mdg)
                .await;
            if let Some(t) = tag {
                self.link(&layout::tag_current(repo, t), &mdg).await;
                self.link(
                    &format!("{}/link", layout::tag_index_dir(repo, t, &mdg)),
                    &mdg,
                )
                .await;
            }
            mdg
        }

        /// Sets every file's modification time `age` into the past.
        fn age_all(&self, age: Duration) {
            let t = SystemTime::now() - age;
            let mut stack = vec![self.root.clone()];
            while let Some(p) = stack.pop() {
                for e in std::fs::read_dir(&p).unwrap() {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        // Directories too: a layer link is taken from its directory.
                        std::fs::File::open(e.path())
                            .unwrap()
                            .set_modified(t)
                            .unwrap();
                        stack.push(e.path());
                    } else {
                        let f = std::fs::File::options().write(true).open(e.path()).unwrap();
                        f.set_modified(t).unwrap();
                    }
                }
            }
        }

        async fn exists(&self, dg: &Digest) -> bool {
            self.d.stat(&dg.blob_data()).await.is_ok()
        }

        async fn files(&self) -> Vec<(String, u64, SystemTime)> {
            let mut v: Vec<_> = self
                .d
                .walk_collect("/")
                .await
                .unwrap()
                .into_iter()
                .filter(|f| !f.is_dir)
                .map(|f| (f.path.as_str().to_owned(), f.size, f.mod_time))
                .collect();
            v.sort();
            v
        }

        fn collector(
            &self,
            dry_run: bool,
            delete_untagged: bool,
            min_age: Duration,
        ) -> Collector<'_> {
            Collector::new(
                &self.d,
                GcArgs {
                    dry_run,
                    delete_untagged,
                    min_age,
                    jobs: 4,
                },
                crate::progress::Progress::new(false),
                crate::interrupt::Interrupt::default(),
            )
        }
    }

    fn names(v: &[Digest]) -> BTreeSet<String> {
        v.iter().map(ToString::to_string).collect()
    }

    use std::collections::BTreeSet;

    #[tokio::test]
    async fn sweeps_what_nothing_references_and_its_layer_links() {
        let s = Store::new();
        let (_, live) = s.image("team/app", Some("v1"), &["base", "app1"]).await;
        let (_, live2) = s.image("other", Some("1"), &["base", "other"]).await;
        let orphan = s.blob(b"orphan layer").await;
        s.link(&layout::layer_link("team/app", &orphan), &orphan)
            .await;
        let before = s.files().await;
        let dry = s
            .collector(true, false, Duration::ZERO)
            .run()
            .await
            .unwrap();
        assert_eq!(s.files().await, before, "a dry run wrote");
        assert_eq!(
            names(&dry.eligible_blobs),
            names(std::slice::from_ref(&orphan))
        );
        assert_eq!(
            dry.eligible_links,
            vec![("team/app".into(), orphan.clone())]
        );

        let real = s
            .collector(false, false, Duration::ZERO)
            .run()
            .await
            .unwrap();
        assert_eq!(real.deleted, [0, 1, 1]);
        assert!(!s.exists(&orphan).await);
        assert!(s
            .d
            .stat(&layout::layer_link("team/app", &orphan))
            .await
            .is_err());
        for b in live.iter().chain(&live2) {
            assert!(s.exists(b).await, "{b} was deleted");
        }
    }

    #[tokio::test]
    async fn untagged_manifests_go_but_an_index_keeps_its_children() {
        let s = Store::new();
        let (old, old_blobs) = s.image("app", Some("latest"), &["one"]).await;
        let (_, new_blobs) = s.image("app", Some("latest"), &["two"]).await;
        let (kid, kid_blobs) = s.image("app", None, &["kid"]).await;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"digest": kid.to_string(), "size": 1}],
        });
        s.manifest("app", Some("multi"), &index).await;
        let r = s
            .collector(false, true, Duration::ZERO)
            .run()
            .await
            .unwrap();
        assert_eq!(
            r.eligible_manifests
                .iter()
                .map(|m| m.digest.clone())
                .collect::<Vec<_>>(),
            vec![old.clone()]
        );
        // The tag's index entry for the old manifest went with its revision.
        assert!(s
            .d
            .stat(&format!(
                "{}/link",
                layout::tag_index_dir("app", "latest", &old)
            ))
            .await
            .is_err());
        assert!(!s.exists(&old).await);
        for b in &old_blobs {
            assert!(!s.exists(b).await);
        }
        for b in new_blobs.iter().chain(&kid_blobs).chain([&kid]) {
            assert!(s.exists(b).await, "{b} was deleted");
        }
    }

    #[tokio::test]
    async fn min_age_spares_recent_blobs_links_and_untagged_manifests() {
        let s = Store::new();
        let old_orphan = s.blob(b"old orphan").await;
        s.image("app", None, &["untagged layer"]).await;
        let linked = s.blob(b"old, but linked again").await;
        s.image("app", Some("v1"), &["live"]).await;
        s.age_all(2 * HOUR);
        // Within the hour: a new orphan, and a fresh link (a mount) to an old blob.
        let young = s.blob(b"young orphan").await;
        s.link(&layout::layer_link("other", &linked), &linked).await;
        let r = s.collector(true, true, HOUR).run().await.unwrap();
        assert!(names(&r.eligible_blobs).contains(&old_orphan.to_string()));
        assert!(!names(&r.eligible_blobs).contains(&young.to_string()));
        assert!(!names(&r.eligible_blobs).contains(&linked.to_string()));
        assert_eq!(r.young_blobs, 2);
        assert_eq!(r.eligible_manifests.len(), 1);

        // The untagged manifest, linked within the hour, is kept with its blobs.
        let s = Store::new();
        s.image("app", Some("v1"), &["live"]).await;
        s.age_all(2 * HOUR);
        let (fresh, fresh_blobs) = s.image("app", None, &["pushed, not yet tagged"]).await;
        let r = s.collector(false, true, HOUR).run().await.unwrap();
        assert_eq!(r.young_manifests, 1);
        assert!(r.eligible_manifests.is_empty() && r.eligible_blobs.is_empty());
        for b in fresh_blobs.iter().chain([&fresh]) {
            assert!(s.exists(b).await);
        }
    }

    /// A registry written two hours ago: `app:v1`, and an untagged image whose config and
    /// layer (returned) nothing else references.
    async fn aged_with_an_untagged_image() -> (Store, Vec<Digest>) {
        let s = Store::new();
        s.image("app", Some("v1"), &["live"]).await;
        let (_, gone) = s.image("app", None, &["reused"]).await;
        s.age_all(2 * HOUR);
        (s, gone)
    }

    /// An image manifest over `gone`'s layer and config (the untagged image's own
    /// manifest unless `note` makes it another).
    fn reusing(gone: &[Digest], note: Option<&str>) -> Value {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": gone[1].to_string(), "size": 1},
            "layers": [{"digest": gone[0].to_string(), "size": 1}],
        });
        if let Some(n) = note {
            m["annotations"] = json!({ "pushed": n });
        }
        m
    }

    #[tokio::test]
    async fn a_manifest_pushed_before_the_re_mark_keeps_an_old_unreferenced_blob() {
        let (s, gone) = aged_with_an_untagged_image().await;
        let mut c = s.collector(false, true, HOUR);
        c.scan().await.unwrap();
        c.mark().await.unwrap();
        c.scan_blobs().await.unwrap();
        assert!(c.unreferenced.contains(&gone[0]));
        // A push reusing the old layer (its link in this repository is old: the client
        // was told the blob exists and did not upload it) lands now.
        s.manifest("app", Some("v2"), &reusing(&gone, None)).await;
        c.remark().await.unwrap();
        c.sweep().await.unwrap();
        c.check_after().await.unwrap();
        let r = c.finish();
        assert_eq!(r.remarked, 1);
        assert!(r.broken.is_empty());
        assert!(s.exists(&gone[0]).await && s.exists(&gone[1]).await);
    }

    #[tokio::test]
    async fn a_manifest_pushed_after_the_re_mark_is_reported() {
        let (s, gone) = aged_with_an_untagged_image().await;
        let mut c = s.collector(false, true, HOUR);
        c.scan().await.unwrap();
        c.mark().await.unwrap();
        c.scan_blobs().await.unwrap();
        c.remark().await.unwrap();
        // Another image reusing its blobs, and the untagged manifest tagged again.
        let m = s
            .manifest("app", Some("v2"), &reusing(&gone, Some("during the sweep")))
            .await;
        let retagged = s.manifest("app", Some("v3"), &reusing(&gone, None)).await;
        c.sweep().await.unwrap();
        c.check_after().await.unwrap();
        let r = c.finish();
        assert_eq!(r.broken.len(), 3, "{:?}", r.broken);
        let text = r.broken.join("\n");
        assert!(
            text.contains(&format!("app@{m} was pushed during the sweep")),
            "{text}"
        );
        assert!(
            text.contains(&format!("app:v3 was tagged during the sweep as {retagged}")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_manifest_stops_the_run_before_any_delete() {
        let s = Store::new();
        let orphan = s.blob(b"orphan").await;
        s.image("app", Some("v1"), &["live"]).await;
        let bad = s
            .blob(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#)
            .await;
        s.link(&format!("{}/link", layout::revision_dir("app", &bad)), &bad)
            .await;
        let e = s.collector(false, false, Duration::ZERO).run().await;
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("unrecognized manifest content type"), "{msg}");
        assert!(msg.contains(&bad.to_string()), "{msg}");
        assert!(s.exists(&orphan).await);
    }

    #[tokio::test]
    async fn an_empty_or_missing_tree_is_nothing_to_do() {
        let s = Store::new();
        let r = s
            .collector(false, true, Duration::ZERO)
            .run()
            .await
            .unwrap();
        assert_eq!(
            (r.repositories, r.blobs_seen, r.marked_all.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn go_durations_print() {
        assert_eq!(humantime(HOUR), "1h");
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::ZERO), "0s");
    }
}
