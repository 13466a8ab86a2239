//! The paging loop, written once: requests page after page until the listing ends.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use driver_api::Result;

use crate::{Cx, ListPage, ListRequest, ObjectBackend};

/// How the next page is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continue {
    /// With the token the last page returned.
    Token,
    /// After the last key listed (where the backend takes a start-after key): what a
    /// tree delete uses, see `delete.rs`.
    AfterLastKey,
}

/// A listing, one page at a time; memory is one page.
pub(crate) struct Pager<'a, B> {
    backend: &'a B,
    counter: &'a AtomicU64,
    cx: Cx<'a>,
    req: ListRequest<'a>,
    mode: Continue,
    token: Option<String>,
    start_after: Option<String>,
    done: bool,
}

impl<'a, B: ObjectBackend> Pager<'a, B> {
    pub(crate) fn new(
        backend: &'a B,
        counter: &'a AtomicU64,
        cx: Cx<'a>,
        req: ListRequest<'a>,
    ) -> Self {
        Self {
            backend,
            counter,
            cx,
            req,
            mode: Continue::Token,
            token: None,
            start_after: None,
            done: false,
        }
    }

    /// Lists keys after `key` only.
    pub(crate) fn start_after(&mut self, key: String) {
        self.start_after = Some(key);
    }

    /// Asks for at most `n` entries a page.
    pub(crate) fn set_max(&mut self, n: u32) {
        self.req.max = Some(n);
    }

    pub(crate) fn continue_by(&mut self, mode: Continue) {
        self.mode = mode;
    }

    /// The next page, or `None` once the listing has ended.
    pub(crate) async fn next(&mut self) -> Result<Option<ListPage>> {
        if self.done {
            return Ok(None);
        }
        let req = ListRequest {
            token: self.token.as_deref(),
            start_after: self.start_after.as_deref(),
            ..self.req
        };
        self.counter.fetch_add(1, Relaxed);
        let page = self.backend.list_page(self.cx, &req).await?;
        match page.next.as_deref() {
            None => self.done = true,
            // A service that answers the same token again would page for ever.
            Some(t) if self.token.as_deref() == Some(t) => {
                tracing::warn!(driver = B::NAME, op = %self.cx.op, path = %self.cx.path,
                    "the listing returned its own continuation again; stopping");
                self.done = true;
            }
            Some(t) => match (self.mode, page.last_key()) {
                // (A key that is listed again, on a service whose start is inclusive,
                // was not deleted: the token moves on past it.)
                (Continue::AfterLastKey, Some(last))
                    if B::START_AFTER && self.start_after.as_deref() != Some(last) =>
                {
                    self.start_after = Some(last.to_owned());
                    self.token = None;
                }
                _ => self.token = Some(t.to_owned()),
            },
        }
        Ok(Some(page))
    }
}
