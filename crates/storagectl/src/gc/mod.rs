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

use crate::{emit, emit_json, App, CliError, CliResult};
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
    mut f: impl FnMut(&FileInfo) + Send,
) -> Result<(), StorageError> {
    let res = d
        .walk(root, &WalkOptions::default(), |fi| {
            f(fi);
            WalkControl::Continue
        })
        .await;
    match res {
        Err(StorageError::PathNotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Phase 1 (and 6): every repository below `repositories/`.
async fn scan_repositories(
    d: &Driver,
    bar: &indicatif::ProgressBar,
) -> Result<BTreeMap<String, Repo>, StorageError> {
    let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
    walk_files(d, &layout::repositories_root(), |fi| {
        bar.inc(1);
        let Some((name, entry)) = layout::repo_entry(fi.path.as_str()) else {
            return;
        };
        let repo = match repos.get_mut(name) {
            Some(r) => r,
            None => repos.entry(name.to_owned()).or_default(),
        };
        match entry {
            RepoEntry::Layers(link) => {
                repo.is_repo = true;
                if let (Some(dg), false) = (link, fi.is_dir) {
                    repo.layers.push((dg, fi.mod_time));
                }
            }
            RepoEntry::Revision(dg) if !fi.is_dir => {
                repo.revisions.insert(dg, fi.mod_time);
            }
            RepoEntry::Tag {
                name,
                current,
                index,
            } => {
                if repo.tags.last() != Some(&name) && !repo.tags.contains(&name) {
                    repo.tags.push(name.clone());
                }
                if fi.is_dir {
                    return;
                }
                if let Some(dg) = index {
                    repo.tag_index.push((name, dg));
                } else if current {
                    repo.current.push((name, fi.mod_time));
                }
            }
            _ => {}
        }
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
    phases: Vec<(&'static str, Duration)>,
}

/// `storagectl gc`.
pub async fn command(app: &App, args: GcArgs) -> CliResult {
    let jobs = args.jobs.max(1);
    let d = app.driver().await?;
    let started = SystemTime::now();
    let cutoff = started.checked_sub(args.min_age).unwrap_or(started);
    let mut report = Report::default();
    let mut clock = Instant::now();
    let mut phase = |report: &mut Report, name: &'static str| {
        report.phases.push((name, clock.elapsed()));
        clock = Instant::now();
    };
    let check_interrupt = || {
        if app.interrupt.is_set() {
            Err(CliError::Interrupted)
        } else {
            Ok(())
        }
    };

    // 1. Scan the repositories.
    let bar = app.progress.counter("scanning repositories");
    let repos = scan_repositories(&d, &bar).await?;
    bar.finish_and_clear();
    report.repositories = repos.len();
    report.manifests = repos.values().map(|r| r.revisions.len()).sum();
    phase(&mut report, "scan repositories");
    check_interrupt()?;

    // 2. Tags, if untagged manifests are to go.
    let tagged = if args.delete_untagged {
        read_tags(&d, &repos, jobs).await?
    } else {
        HashMap::new()
    };
    phase(&mut report, "read tags");

    // 3. Mark.
    let marks = Marks::default();
    let mut untagged: Vec<ManifestDel> = Vec::new();
    let mut to_mark: Vec<(String, Digest)> = Vec::new();
    for (name, r) in &repos {
        let mut revs: Vec<(&Digest, &SystemTime)> = r.revisions.iter().collect();
        revs.sort();
        for (dg, linked) in revs {
            let is_tagged = tagged.get(name).is_some_and(|t| t.contains(dg));
            if args.delete_untagged && !is_tagged && *linked <= cutoff {
                // Distribution's `RemoveManifest` deletes the revision's entry in every
                // tag's index; only those the scan found are deleted here.
                let tags = r
                    .tag_index
                    .iter()
                    .filter(|(_, rev)| rev == dg)
                    .map(|(t, _)| t.clone())
                    .collect();
                untagged.push(ManifestDel {
                    repo: name.clone(),
                    digest: dg.clone(),
                    tags,
                });
            } else {
                // Untagged but linked within --min-age (a push between its manifest and
                // its tag): kept, and what it references with it.
                if args.delete_untagged && !is_tagged {
                    report.young_manifests += 1;
                }
                to_mark.push((name.clone(), dg.clone()));
            }
        }
    }
    let bar = app.progress.items(to_mark.len() as u64, "marking");
    let mut stream = futures::stream::iter(to_mark)
        .map(|(name, dg)| {
            let (d, marks, bar, repos) = (&d, &marks, &bar, &repos);
            async move {
                let revisions = repos.get(&name).map(|r| &r.revisions);
                let m = match revisions {
                    Some(revs) => mark_manifest(d, marks, &name, revs, &dg).await,
                    None => Err(CliError::Failed(format!("repository {name} vanished"))),
                };
                bar.inc(1);
                m
            }
            .boxed()
        })
        .buffer_unordered(jobs);
    while let Some(m) = stream.next().await {
        check_interrupt()?;
        report.marked.push(m?);
    }
    drop(stream);
    bar.finish_and_clear();
    // An untagged manifest that a marked index references stays (Distribution v3's
    // `unmarkReferencedManifest`).
    untagged.retain(|m| !marks.contains(&m.digest));
    phase(&mut report, "mark");

    // 4. Scan the blobs: the unreferenced ones, with their times.
    let bar = app.progress.counter("scanning blobs");
    let mut unreferenced: Vec<(Digest, SystemTime)> = Vec::new();
    let mut blobs_seen = 0u64;
    walk_files(&d, &layout::blobs_root(), |fi| {
        bar.inc(1);
        if fi.is_dir {
            return;
        }
        if let Some(dg) = layout::blob_of(fi.path.as_str()) {
            blobs_seen += 1;
            if !marks.contains(&dg) {
                unreferenced.push((dg, fi.mod_time));
            }
        }
    })
    .await?;
    bar.finish_and_clear();
    report.blobs_seen = blobs_seen;
    phase(&mut report, "scan blobs");
    check_interrupt()?;

    // 5. Eligible, less what is younger than --min-age.
    let young_links: HashSet<&Digest> = repos
        .values()
        .flat_map(|r| r.layers.iter())
        .filter(|(_, t)| *t > cutoff)
        .map(|(dg, _)| dg)
        .collect();
    let (old, young): (Vec<_>, Vec<_>) = unreferenced
        .into_iter()
        .partition(|(dg, t)| *t <= cutoff && !young_links.contains(dg));
    report.young_blobs = young.len();
    let mut eligible_blobs: HashSet<Digest> = old.into_iter().map(|(dg, _)| dg).collect();
    drop(young_links);
    let mut eligible_manifests = untagged;

    // 6. Re-mark what appeared meanwhile (real runs with something to delete).
    if !args.dry_run && (!eligible_blobs.is_empty() || !eligible_manifests.is_empty()) {
        let bar = app.progress.counter("re-checking repositories");
        let now = scan_repositories(&d, &bar).await?;
        bar.finish_and_clear();
        // What changed is told by the first scan, not by a clock: a revision link or a
        // tag's current link that is new or was rewritten (its time differs).
        let retagged = if args.delete_untagged {
            let moved: BTreeMap<String, Repo> = now
                .iter()
                .map(|(name, r)| {
                    let current = r
                        .current
                        .iter()
                        .filter(|(tag, t)| {
                            repos
                                .get(name)
                                .is_none_or(|b| !b.current.contains(&(tag.clone(), *t)))
                        })
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
            read_tags(&d, &moved, jobs).await?
        } else {
            HashMap::new()
        };
        let mut fresh: Vec<(&str, &Repo, Digest)> = Vec::new();
        for (name, r) in &now {
            let before = repos.get(name);
            for (dg, t) in &r.revisions {
                let new = before.is_none_or(|b| b.revisions.get(dg) != Some(t));
                let retag = retagged.get(name).is_some_and(|s| s.contains(dg));
                if (new || retag) && !marks.contains(dg) {
                    fresh.push((name, r, dg.clone()));
                }
            }
            for (dg, t) in &r.layers {
                if *t > cutoff {
                    eligible_blobs.remove(dg);
                }
            }
        }
        report.remarked = fresh.len();
        for (name, r, dg) in fresh {
            mark_manifest(&d, &marks, name, &r.revisions, &dg).await?;
        }
        eligible_manifests.retain(|m| !marks.contains(&m.digest));
        eligible_blobs.retain(|dg| !marks.contains(dg));
        phase(&mut report, "re-mark");
    }
    check_interrupt()?;

    let mut blobs: Vec<Digest> = eligible_blobs.into_iter().collect();
    blobs.sort();
    let doomed: HashSet<&Digest> = blobs.iter().collect();
    let mut links: Vec<(String, Digest)> = repos
        .iter()
        .flat_map(|(name, r)| {
            r.layers
                .iter()
                .filter(|(dg, _)| doomed.contains(dg))
                .map(move |(dg, _)| (name.clone(), dg.clone()))
        })
        .collect();
    links.sort();
    drop(doomed);
    report.marked_all = marks
        .set
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .collect();
    report.marked_all.sort();

    // 7. Sweep.
    if !args.dry_run {
        sweep(
            app,
            &d,
            jobs,
            &eligible_manifests,
            &blobs,
            &links,
            &mut report,
        )
        .await?;
        phase(&mut report, "sweep");
    }
    report.eligible_blobs = blobs;
    report.eligible_manifests = eligible_manifests;
    report.eligible_links = links;
    report
        .marked
        .sort_by(|a, b| (&a.repo, &a.manifest).cmp(&(&b.repo, &b.manifest)));

    if app.json {
        emit_json(&to_json(&report, &args))?;
    } else {
        emit(&to_text(&report, &args))?;
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} deletion(s) failed",
            report.failed.len()
        )))
    }
}

/// Phase 7: manifests, then blobs, then layer links (Distribution's order).
async fn sweep(
    app: &App,
    d: &Driver,
    jobs: usize,
    manifests: &[ManifestDel],
    blobs: &[Digest],
    links: &[(String, Digest)],
    report: &mut Report,
) -> CliResult {
    let total = manifests.len() + blobs.len() + links.len();
    let bar = app.progress.items(total as u64, "deleting");
    let mut kinds: [Vec<Vec<String>>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for m in manifests {
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
    // Each kind finishes before the next starts.
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
            .buffer_unordered(jobs);
        while let Some(res) = stream.next().await {
            bar.inc(1);
            match res {
                Ok(()) => report.deleted[kind] += 1,
                Err(e) => {
                    eprintln!("storagectl: gc: deleting {e}");
                    report.failed.push(e);
                }
            }
            if app.interrupt.is_set() {
                return Err(CliError::Interrupted);
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn to_text(r: &Report, args: &GcArgs) -> String {
    let mut s = String::new();
    let mut last = "";
    for m in r.marked.iter().filter(|m| m.present) {
        if m.repo != last {
            s.push_str(&format!("{}\n", m.repo));
            last = &m.repo;
        }
        s.push_str(&format!("{}: marking manifest {}\n", m.repo, m.manifest));
        for b in &m.blobs {
            s.push_str(&format!("{}: marking blob {b}\n", m.repo));
        }
    }
    for m in &r.eligible_manifests {
        s.push_str(&format!(
            "manifest eligible for deletion: {} ({})\n",
            m.digest, m.repo
        ));
    }
    s.push_str(&format!(
        "\n{} blobs marked, {} blobs and {} manifests eligible for deletion\n",
        r.marked_all.len(),
        r.eligible_blobs.len(),
        r.eligible_manifests.len()
    ));
    for b in &r.eligible_blobs {
        s.push_str(&format!("blob eligible for deletion: {b}\n"));
    }
    for (repo, dg) in &r.eligible_links {
        s.push_str(&format!("{repo}: layer link eligible for deletion: {dg}\n"));
    }
    if r.young_blobs + r.young_manifests > 0 {
        s.push_str(&format!(
            "{} blobs and {} manifests unreferenced but changed within --min-age {}: kept\n",
            r.young_blobs,
            r.young_manifests,
            humantime(args.min_age)
        ));
    }
    if r.remarked > 0 {
        s.push_str(&format!(
            "{} manifests pushed during the run were marked before the sweep\n",
            r.remarked
        ));
    }
    if !args.dry_run {
        s.push_str(&format!(
            "deleted {} manifests, {} blobs, {} layer links; {} failed\n",
            r.deleted[0],
            r.deleted[1],
            r.deleted[2],
            r.failed.len()
        ));
    }
    s
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
