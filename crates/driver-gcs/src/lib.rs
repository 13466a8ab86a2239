//! The Google Cloud Storage driver, registered as `"gcs"`.
//!
//! It speaks the GCS JSON API over `reqwest` (see docs/drivers/gcs.md for why not an
//! SDK) and authenticates with `google-cloud-auth` (a service-account key from `keyfile`
//! or `credentials`, Application Default Credentials, or nothing for emulators).
//! [`GcsDriver`] is the object-store core's generic driver
//! ([`driver_objectstore::ObjectStore`]) over [`GcsBackend`], which sends one JSON API
//! request per step; the core drives the loops (paging, stat by a one-object listing,
//! the walk over one flat listing, the streaming tree delete, move as copy then delete).
//! How the steps map onto GCS:
//!
//! * a path `/a/b` is the object `<rootdirectory>/a/b` in `bucket`; directories are
//!   implicit (a name prefix);
//! * head is `objects.get` (metadata); a read is a ranged `alt=media` download, streamed
//!   (a whole read one download); a put is one simple (`uploadType=media`) upload;
//! * copy is `objects.rewrite`, looped with its `rewriteToken` until done (one
//!   service-side operation); delete is `objects.delete`, one object a request
//!   (`maxconcurrency` in flight during a tree delete);
//! * a listing page is `objects.list` (`/` delimiter for `list`; `startOffset` where the
//!   core continues after a key, for a walk's start-after hint and the tree delete;
//!   1,000 objects a page unless the core asks for fewer);
//! * the writer is the core's resumable writer ([`driver_objectstore::upload`]) over a
//!   resumable upload session: the session URI is the upload, a part is a chunk `PUT` to
//!   it (a multiple of 256 KiB; a shorter tail is parked in `<key>#upload` on `close`),
//!   the last part's request names the total size and so finalises the object, abort
//!   deletes the session (see the `writer` module);
//! * `redirect_url` is a V4 signed URL (`GOOG4-RSA-SHA256`) when a service-account key
//!   is configured, valid 20 minutes by default, at most 7 days; otherwise `None`.
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "gcs",
//!     Parameters::new()
//!         .with("bucket", "registry")
//!         .with("keyfile", "/etc/registry/gcs-key.json"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
pub mod sign;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, FileWriter, Parameters, RedirectMethod, RedirectRequest, Result, StorageError,
    StoragePath,
};
use driver_http::Call;
use driver_http::RestClient as _;
use driver_objectstore::{
    Cx, Got, ListPage, ListRequest, MultipartWriter, ObjectBackend, ObjectMeta, ObjectStore,
};
use reqwest::{Method, StatusCode};

use crate::client::{Client, Object, ObjectList, Rewrite};
use crate::params::GcsParams;

/// The registered name.
pub const DRIVER: &str = "gcs";

/// GCS's page maximum, asked for explicitly (some servers default to everything).
const PAGE: u32 = 1000;

/// The GCS driver: the object-store core over [`GcsBackend`]. Cheap to clone (one shared
/// client).
pub type GcsDriver = ObjectStore<GcsBackend>;

register_driver! {
    name: DRIVER,
    description: "Google Cloud Storage (JSON API; service-account key, ADC or anonymous)",
    parameters: params::PARAMS,
    create: GcsDriver::from_parameters,
}

/// GCS's JSON API requests, one per step of the object-store core (see the crate docs).
pub struct GcsBackend {
    client: Client,
    keys: KeySpace,
    p: GcsParams,
}

impl std::fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsDriver")
            .field("params", &self.p)
            .finish_non_exhaustive()
    }
}

impl GcsBackend {
    /// The backend for parsed parameters. No request is made.
    pub fn new(p: GcsParams) -> Result<Self> {
        Ok(Self {
            client: Client::new(&p)?,
            keys: KeySpace::new(&p.root),
            p,
        })
    }

    /// `objects.get?alt=media` of `key`, from `offset` on when not 0.
    async fn media(
        &self,
        cx: Cx<'_>,
        key: &str,
        offset: u64,
        generation: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut url = self.client.object_url(key);
        url.query_pairs_mut().append_pair("alt", "media");
        if let Some(g) = generation {
            url.query_pairs_mut().append_pair("ifGenerationMatch", g);
        }
        let mut call = Call::new(cx.op, cx.path, Method::GET, url);
        if offset > 0 {
            call = call.header("range", format!("bytes={offset}-"));
        }
        self.client.send(call).await
    }
}

impl From<Object> for ObjectMeta {
    fn from(o: Object) -> Self {
        let (size, mod_time) = (o.size(), o.mod_time());
        ObjectMeta::new(o.name, size, mod_time)
    }
}

#[async_trait]
impl ObjectBackend for GcsBackend {
    const NAME: &'static str = DRIVER;
    /// `startOffset` (inclusive, which the core tolerates).
    const START_AFTER: bool = true;

    /// Parses the parameters (a key file is read off the async workers).
    async fn from_parameters(params: Parameters) -> Result<Self> {
        let p = tokio::task::spawn_blocking(move || GcsParams::parse(params))
            .await
            .map_err(|e| StorageError::Config {
                driver: DRIVER.into(),
                message: format!("reading the parameters failed: {e}"),
            })??;
        Self::new(p)
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The JSON API deletes one object a request (its batch endpoint is not used:
    /// fake-gcs-server does not serve it); `maxconcurrency` are in flight.
    fn delete_concurrency(&self) -> usize {
        self.p.max_concurrency
    }

    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let mut url = self.client.object_url(key);
        url.query_pairs_mut()
            .append_pair("fields", "name,size,updated");
        let call = Call::new(cx.op, cx.path, Method::GET, url);
        let answer = self.client.fetch(call, &[200, 404]).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let o: Object = answer.json(DRIVER, cx.op, cx.path)?;
        Ok(Some(ObjectMeta::new(key, o.size(), o.mod_time())))
    }

    /// A ranged `alt=media` download; a pinned read sends `ifGenerationMatch`.
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        let resp = self.media(cx, key, offset, version).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(Got::Stream(driver_http::object_body(
                DRIVER,
                cx.op,
                cx.path,
                resp,
                "x-goog-generation",
            ))),
            404 => Ok(Got::NotFound),
            // The range starts at or past the end.
            416 => Ok(Got::PastEnd),
            412 => Ok(Got::Changed),
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        let url = self.client.upload_url("media", key);
        let call = Call::new(cx.op, cx.path, Method::POST, url)
            .header("content-type", "application/octet-stream")
            .body(data);
        self.client.expect(call, &[200, 201]).await.map(drop)
    }

    /// `objects.rewrite`, repeated with its `rewriteToken` until GCS says it is done
    /// (large or cross-class objects take several calls).
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let url = self.client.rewrite_url(&src.key, dst, token.as_deref());
            let call = Call::new(cx.op, cx.path, Method::POST, url)
                .header("content-type", "application/json");
            let r: Rewrite = self
                .client
                .fetch(call, &[200])
                .await?
                .json(DRIVER, cx.op, cx.path)?;
            if r.done {
                return Ok(());
            }
            token = r.rewrite_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Err(StorageError::backend(
                    DRIVER,
                    cx.op,
                    cx.path,
                    "rewrite not done and no rewriteToken".to_owned(),
                ));
            }
        }
    }

    /// GCS says whether the object existed (404), so `report` costs nothing.
    async fn delete(&self, cx: Cx<'_>, key: &str, _report: bool) -> Result<bool> {
        let url = self.client.object_url(key);
        let resp = self
            .client
            .send(Call::new(cx.op, cx.path, Method::DELETE, url).gone_is_done())
            .await?;
        match resp.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    /// Ends upload `upload` at `key`, one an open parked object names (the core records
    /// every upload when it starts: the service cannot list them): its session (`DELETE` of the session URI).
    async fn abort_upload(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()> {
        driver_objectstore::MultipartBackend::abort(self, cx, key, upload, &[]).await
    }

    /// One `objects.list` page. `startOffset` is sent on every page of a listing, with
    /// the page token too (fake-gcs-server's tokens count from it).
    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        let mut q: Vec<(&str, &str)> = vec![("prefix", req.prefix)];
        if req.delimiter {
            q.push(("delimiter", "/"));
            q.push(("fields", "items(name),prefixes,nextPageToken"));
        } else {
            q.push(("fields", "items(name,size,updated),nextPageToken"));
        }
        if let Some(t) = req.token {
            q.push(("pageToken", t));
        }
        if let Some(s) = req.start_after {
            q.push(("startOffset", s));
        }
        let max = req.max.unwrap_or(PAGE).to_string();
        q.push(("maxResults", &max));
        let url = self.client.objects_url(&q);
        let call = Call::new(cx.op, cx.path, Method::GET, url);
        let answer = self.client.fetch(call, &[200, 404]).await?;
        if answer.status != StatusCode::OK {
            let resp = answer.into_response();
            return Err(self.client.list_error(cx.op, cx.path, resp).await);
        }
        let list: ObjectList = answer.json(DRIVER, cx.op, cx.path)?;
        Ok(ListPage {
            objects: list.items.into_iter().map(ObjectMeta::from).collect(),
            prefixes: list.prefixes,
            next: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// A V4 signed URL, with a service-account key; `None` without one.
    async fn redirect_url(
        &self,
        cx: Cx<'_>,
        request: &RedirectRequest,
        key: &str,
    ) -> Result<Option<String>> {
        let Some(signer) = &self.client.signer else {
            return Ok(None);
        };
        let method = match request.method {
            RedirectMethod::Head => "HEAD",
            _ => "GET",
        };
        signer
            .sign(
                self.client.endpoint(),
                method,
                self.client.bucket(),
                key,
                jiff::Timestamp::now(),
                request.lifetime(),
            )
            .await
            .map(Some)
            .map_err(|e| StorageError::backend(DRIVER, cx.op, cx.path, format!("cannot sign: {e}")))
    }

    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>> {
        MultipartWriter::open(this, path, key, append).await
    }
}
