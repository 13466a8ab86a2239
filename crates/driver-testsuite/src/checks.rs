//! Checks driver-specific tests share: walk order and the walk options, on a tree the test
//! built (object-store drivers prove their one-pass walk with these).

use driver_api::{Driver, FileInfo, WalkControl, WalkOptions};

/// Asserts that `walked` came in the walk's component order.
pub fn assert_walk_order(walked: &[FileInfo]) {
    let got: Vec<&str> = walked.iter().map(|f| f.path.as_str()).collect();
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| driver_api::cmp_paths(a, b));
    assert_eq!(got, sorted, "walk order is component order");
}

/// Walks `root` from the start-after `hint`, answering SkipDir for the directory `skip`;
/// returns the paths reported, in order.
pub async fn walk_after_skipping(d: &Driver, root: &str, hint: &str, skip: &str) -> Vec<String> {
    let hint = d.path(hint).expect("a valid hint path");
    let mut seen = Vec::new();
    d.walk(root, &WalkOptions::start_after(hint), |fi| {
        seen.push(fi.path.as_str().to_owned());
        if fi.is_dir && fi.path.as_str() == skip {
            WalkControl::SkipDir
        } else {
            WalkControl::Continue
        }
    })
    .await
    .expect("walk");
    seen
}
