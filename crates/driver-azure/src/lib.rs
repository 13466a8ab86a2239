//! The Azure Blob Storage driver, registered as `"azure"`.
//!
//! It speaks the Blob REST API over `reqwest` (see docs/drivers/azure.md for why not an
//! SDK) and signs with `reqsign`'s Azure signer (shared key, SAS token, or Entra ID bearer
//! tokens from a client secret or the default chain). A path `/a/b` is the block blob
//! `<rootdirectory>/a/b` in `container`; directories are implicit (a name prefix).
//!
//! [`AzureDriver`] is the object-store core ([`driver_objectstore::ObjectStore`]) over
//! [`AzureBackend`]: the core owns the loops (`stat`, `list` and `walk` paging, the
//! streaming tree delete, `rename` as copy then delete, reads past the end), and the
//! backend sends one request per step:
//!
//! * `head` is `Get Blob Properties`; `get` a ranged `Get Blob` (`x-ms-range`), streamed
//!   (416 is past the end, a missing blob is not found); `put` one `Put Blob`;
//! * `copy` is `Copy Blob` (server side), polled while the copy is pending;
//! * `delete` is `Delete Blob` (snapshots included); `delete_batch` one `Blob Batch` of up
//!   to 256 deletions, falling back to one `Delete Blob` each (`maxconcurrency` in flight)
//!   once the service refuses batches;
//! * `list_page` is one `List Blobs` page (with the `/` delimiter for `list`); Azure has
//!   no start-after, so the core follows `NextMarker`;
//! * `redirect_url` is a read-only SAS URL (service SAS from the account key, or a
//!   user-delegation SAS with Entra ID credentials), valid 20 minutes by default;
//! * the writer is the core's resumable writer ([`driver_objectstore::upload`]) over
//!   [`MultipartBackend`](driver_objectstore::MultipartBackend): a part is a `Put Block`
//!   on the target blob (uncommitted, so invisible), completing is one `Put Block List`
//!   (atomic), the parts are listed back with `Get Block List`, and a closed upload is
//!   parked as `<key>#upload` (see the `writer` module).
//!
//! ```no_run
//! # async fn demo() -> driver_api::Result<()> {
//! use driver_api::Parameters;
//! let d = driver_api::factory::create(
//!     "azure",
//!     Parameters::new()
//!         .with("accountname", "devstoreaccount1")
//!         .with("accountkey", "...")
//!         .with("container", "registry")
//!         .with("serviceurl", "http://127.0.0.1:10000/devstoreaccount1"),
//! )
//! .await?;
//! d.put_content("/hello", "world").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod params;
mod writer;
mod xml;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use driver_api::keys::KeySpace;
use driver_api::{
    register_driver, FileWriter, Parameters, RedirectRequest, Result, StorageError, StoragePath,
};
use driver_http::RestClient as _;
use driver_objectstore::{
    Cx, Got, ListPage, ListRequest, MultipartWriter, ObjectBackend, ObjectMeta, OpenUpload,
};
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, Response, StatusCode};

use crate::client::{Call, Client};
use crate::params::{Auth, AzureParams};
use crate::xml::{EnumerationResults, Item};

/// The registered name.
pub const DRIVER: &str = "azure";

/// Deletions per `Blob Batch` request (Azure's maximum).
const BATCH: usize = 256;
/// Longest wait for a pending server-side copy.
const COPY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

register_driver! {
    name: DRIVER,
    description: "Azure Blob Storage (Blob REST API; shared key, SAS or Entra ID)",
    parameters: params::PARAMS,
    create: AzureDriver::from_parameters,
}

/// The Azure driver: the object-store core over [`AzureBackend`]. Cheap to clone (one
/// shared client).
pub type AzureDriver = driver_objectstore::ObjectStore<AzureBackend>;

/// Azure Blob Storage's requests, one per [`ObjectBackend`] step (see the crate docs).
pub struct AzureBackend {
    client: Client,
    keys: KeySpace,
    /// The service refused a blob batch: delete one by one from now on.
    no_batch: AtomicBool,
    p: AzureParams,
}

impl std::fmt::Debug for AzureBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("params", &self.p)
            .finish_non_exhaustive()
    }
}

impl AzureBackend {
    /// Creates the backend from parsed parameters. No request is made.
    pub fn new(p: AzureParams) -> Result<Self> {
        Ok(Self {
            client: Client::new(&p)?,
            keys: KeySpace::new(&p.root),
            no_batch: AtomicBool::new(false),
            p,
        })
    }

    /// Creates the container if it does not exist. For tests and first-time setup: the
    /// driver itself never creates containers (that needs account-level rights).
    pub async fn create_container(&self) -> Result<()> {
        self.client.container_op(Method::PUT, &[201, 409]).await
    }

    /// Deletes the whole container and everything in it, in one request. For tests and
    /// teardown: `delete("/")` is the contract's way and removes blob by blob.
    pub async fn delete_container(&self) -> Result<()> {
        self.client.container_op(Method::DELETE, &[202, 404]).await
    }

    /// An unsuccessful response: `Ok` when it says the blob does not exist, else the
    /// error it maps to (a missing container is an error, never a missing blob).
    async fn absent(&self, cx: Cx<'_>, resp: Response) -> Result<()> {
        let e = self.client.error(cx.op, cx.path, resp).await;
        if e.is_not_found() {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// The URL a `Copy Blob` of `name` reads from (with the SAS token, when that is how
    /// the driver authenticates).
    fn copy_source(&self, name: &str) -> String {
        let mut url = self.client.blob_url(name);
        if let Auth::Sas(token) = &self.p.auth {
            url.set_query(Some(token));
        }
        url.into()
    }

    /// Waits for a pending copy into blob `dst` to finish.
    async fn wait_copy(&self, cx: Cx<'_>, dst: &str) -> Result<()> {
        let fail = |what: String| StorageError::backend(DRIVER, cx.op, cx.path, what);
        if self.p.network.max_retries == 0 {
            return Err(fail(
                "the copy did not complete at once and max_retries is -1".into(),
            ));
        }
        let started = std::time::Instant::now();
        let mut delay = self.p.network.retry_delay;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.p.network.max_retry_delay);
            let url = self.client.blob_url(dst);
            let resp = self
                .client
                .expect(Call::new(cx.op, cx.path, Method::HEAD, url), &[200])
                .await?;
            match Client::header(&resp, "x-ms-copy-status") {
                Some("success") | None => return Ok(()),
                Some("pending") if started.elapsed() < COPY_TIMEOUT => continue,
                Some("pending") => {
                    return Err(fail(format!("copy still pending after {COPY_TIMEOUT:?}")))
                }
                Some(other) => {
                    let why = Client::header(&resp, "x-ms-copy-status-description").unwrap_or("");
                    return Err(fail(format!("copy {other}: {why}")));
                }
            }
        }
    }

    /// One `List Blobs` page; with `uncommitted`, blobs with only uncommitted blocks too
    /// (`include=uncommittedblobs`).
    async fn list_blobs(
        &self,
        cx: Cx<'_>,
        req: &ListRequest<'_>,
        uncommitted: bool,
    ) -> Result<ListPage> {
        let mut url = self
            .client
            .container_url(&[("restype", "container"), ("comp", "list")]);
        {
            let mut q = url.query_pairs_mut();
            if uncommitted {
                q.append_pair("include", "uncommittedblobs");
            }

            if !req.prefix.is_empty() {
                q.append_pair("prefix", req.prefix);
            }
            if req.delimiter {
                q.append_pair("delimiter", "/");
            }
            if let Some(m) = req.token {
                q.append_pair("marker", m);
            }
            if let Some(n) = req.max {
                q.append_pair("maxresults", &n.to_string());
            }
        }
        let answer = self
            .client
            .fetch(Call::new(cx.op, cx.path, Method::GET, url), &[200])
            .await?;
        let results: EnumerationResults = xml::parse(&answer.text(), cx.op, cx.path)?;
        let mut page = ListPage {
            next: results.next(),
            ..ListPage::default()
        };
        for item in results.blobs.items {
            match item {
                Item::Blob(b) => page.objects.push(ObjectMeta::new(
                    b.name,
                    b.properties.content_length,
                    parse_time(&b.properties.last_modified),
                )),
                Item::BlobPrefix(p) => page.prefixes.push(p.name),
            }
        }
        Ok(page)
    }

    /// A ranged `Get Blob` from `offset` (the whole blob at 0).
    async fn get_blob(
        &self,
        cx: Cx<'_>,
        key: &str,
        offset: u64,
        version: Option<&str>,
    ) -> Result<Response> {
        let mut call = Call::new(cx.op, cx.path, Method::GET, self.client.blob_url(key));
        if offset > 0 {
            call = call.header("x-ms-range", format!("bytes={offset}-"));
        }
        if let Some(v) = version {
            call = call.header("if-match", v);
        }
        self.client.send(call).await
    }
}

#[async_trait]
impl ObjectBackend for AzureBackend {
    const NAME: &'static str = DRIVER;
    /// `List Blobs` has no start-after (its `marker` is opaque): the core follows it.
    const START_AFTER: bool = false;

    async fn from_parameters(params: Parameters) -> Result<Self> {
        Self::new(AzureParams::parse(params)?)
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    fn delete_batch_size(&self) -> usize {
        BATCH
    }

    /// Batches in flight: one per 32 of `maxconcurrency`.
    fn delete_concurrency(&self) -> usize {
        self.p.max_concurrency.div_ceil(BATCH / 8).max(1)
    }

    /// `Get Blob Properties`.
    async fn head(&self, cx: Cx<'_>, key: &str) -> Result<Option<ObjectMeta>> {
        let url = self.client.blob_url(key);
        let resp = self
            .client
            .send(Call::new(cx.op, cx.path, Method::HEAD, url))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(ObjectMeta::new(
                key,
                content_length(&resp),
                last_modified(&resp),
            ))),
            _ => self.absent(cx, resp).await.map(|()| None),
        }
    }

    /// Ranged `Get Blob`, streamed; a pinned read sends `If-Match` with the ETag.
    async fn get(&self, cx: Cx<'_>, key: &str, offset: u64, version: Option<&str>) -> Result<Got> {
        let resp = self.get_blob(cx, key, offset, version).await?;
        match resp.status().as_u16() {
            200 | 206 => Ok(Got::Stream(driver_http::object_body(
                DRIVER, cx.op, cx.path, resp, "etag",
            ))),
            // The range starts at or past the end.
            416 => Ok(Got::PastEnd),
            412 => Ok(Got::Changed),
            _ => self.absent(cx, resp).await.map(|()| Got::NotFound),
        }
    }

    /// `Put Blob`: the whole content in one request.
    async fn put(&self, cx: Cx<'_>, key: &str, data: Bytes) -> Result<()> {
        let url = self.client.blob_url(key);
        let call = Call::new(cx.op, cx.path, Method::PUT, url)
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-blob-content-type", "application/octet-stream")
            .body(data);
        self.client.expect(call, &[201]).await.map(drop)
    }

    /// `Copy Blob` within the account, then polling while the copy is pending.
    async fn copy(&self, cx: Cx<'_>, src: &ObjectMeta, dst: &str) -> Result<()> {
        let url = self.client.blob_url(dst);
        let call = Call::new(cx.op, cx.path, Method::PUT, url)
            .header("x-ms-copy-source", self.copy_source(&src.key));
        let resp = self.client.send(call).await?;
        match resp.status().as_u16() {
            201 | 202 => {
                if Client::header(&resp, "x-ms-copy-status") == Some("pending") {
                    self.wait_copy(cx, dst).await?;
                }
                Ok(())
            }
            404 => Err(StorageError::not_found(DRIVER, cx.path)),
            _ => Err(self.client.error(cx.op, cx.path, resp).await),
        }
    }

    /// `Delete Blob`, snapshots included; Azure says whether it existed.
    async fn delete(&self, cx: Cx<'_>, key: &str, _report: bool) -> Result<bool> {
        let url = self.client.blob_url(key);
        let call = Call::new(cx.op, cx.path, Method::DELETE, url)
            .header("x-ms-delete-snapshots", "include")
            .gone_is_done();
        let resp = self.client.send(call).await?;
        match resp.status() {
            // 204: a retry found it gone after the answer to the first attempt was lost.
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT => Ok(true),
            _ => self.absent(cx, resp).await.map(|()| false),
        }
    }

    /// One `Blob Batch` of up to 256 deletions. Once the service refuses a batch, one
    /// `Delete Blob` per blob instead (from then on), about `maxconcurrency` in flight
    /// across the batches the core runs at once.
    async fn delete_batch(&self, cx: Cx<'_>, objects: &[ObjectMeta]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        if !self.no_batch.load(Relaxed) {
            let names: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
            match self.client.delete_batch(cx.op, cx.path, &names).await? {
                Some(statuses) => {
                    return match statuses.into_iter().find(|s| !matches!(s, 202 | 404)) {
                        None => Ok(()),
                        Some(s) => Err(driver_http::status_error(
                            DRIVER,
                            cx.op,
                            cx.path,
                            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                            "",
                            "a blob of the batch was not deleted",
                        )),
                    };
                }
                None => {
                    tracing::debug!("blob batch refused; deleting one by one");
                    self.no_batch.store(true, Relaxed);
                }
            }
        }
        let each = self.p.max_concurrency.div_ceil(self.delete_concurrency());
        // (Indices: a closure over `&ObjectMeta` is not general enough for `Send`.)
        futures::stream::iter(0..objects.len())
            .map(|i| self.delete(cx, &objects[i].key, false))
            .buffer_unordered(each.max(1))
            .try_collect::<Vec<bool>>()
            .await
            .map(drop)
    }

    /// One `List Blobs` page; `next` is its `NextMarker`.
    async fn list_page(&self, cx: Cx<'_>, req: &ListRequest<'_>) -> Result<ListPage> {
        self.list_blobs(cx, req, false).await
    }

    /// Blobs that hold only uncommitted blocks (a writer killed before it closed, on a
    /// path without committed content), by their newest session; see the `writer` module.
    async fn list_uploads(&self, cx: Cx<'_>, prefix: &str) -> Result<Vec<OpenUpload>> {
        self.uncommitted_sessions(cx, prefix).await
    }

    /// Discards session `upload`'s blocks of blob `key` (the writer's abort).
    async fn abort_upload(&self, cx: Cx<'_>, key: &str, upload: &str) -> Result<()> {
        driver_objectstore::MultipartBackend::abort(self, cx, key, upload, &[]).await
    }

    /// A read-only SAS URL.
    async fn redirect_url(
        &self,
        cx: Cx<'_>,
        request: &RedirectRequest,
        key: &str,
    ) -> Result<Option<String>> {
        self.client.read_url(cx.path, key, request.lifetime()).await
    }

    /// The core's resumable writer over staged blocks (see the `writer` module).
    async fn writer(
        this: Arc<Self>,
        path: &StoragePath,
        key: String,
        append: bool,
    ) -> Result<Box<dyn FileWriter>> {
        MultipartWriter::open(this, path, key, append).await
    }
}

fn content_length(resp: &Response) -> u64 {
    Client::header(resp, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn last_modified(resp: &Response) -> SystemTime {
    Client::header(resp, "last-modified").map_or(SystemTime::UNIX_EPOCH, parse_time)
}

fn parse_time(s: &str) -> SystemTime {
    httpdate::parse_http_date(s).unwrap_or(SystemTime::UNIX_EPOCH)
}
