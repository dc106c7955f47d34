//! A SPIFFE Workload API endpoint for tests: tonic's generated
//! `SpiffeWorkloadAPI` server (from `proto/workload.proto`) on a Unix socket,
//! answering `FetchX509SVID` with what the test sets, when the test says so.
//!
//! As the Workload Endpoint spec (§3, §6) asks, a call without the metadata
//! `workload.spiffe.io: true` is refused with `InvalidArgument`. `FetchJWTSVID`
//! answers the tokens the test set for the audience asked for
//! ([`FakeWorkloadApi::set_jwt_svids`]; `PermissionDenied` for another), and
//! `FetchJWTBundles` streams the JWT bundles the test sets, again on every change
//! ([`FakeWorkloadApi::set_jwt_bundles`]). The other methods answer
//! `Unimplemented`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Code, Request, Response, Status};

use crate::TempDir;
use crate::workload_proto::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use crate::workload_proto::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};

/// The gRPC path of `FetchX509SVID`: the spec's proto declares no package.
pub const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";
/// The metadata every Workload API call must carry.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Bound for waits inside the fake.
const TIMEOUT: Duration = Duration::from_secs(20);

impl X509svid {
    /// An entry for one SVID: its ID, its chain (DER certificates, leaf first),
    /// its PKCS#8 key and its trust domain's authorities (DER certificates).
    pub fn from_parts<C: AsRef<[u8]>, A: AsRef<[u8]>>(
        spiffe_id: &str,
        chain: &[C],
        key_pkcs8: &[u8],
        authorities: &[A],
    ) -> Self {
        Self {
            spiffe_id: spiffe_id.to_owned(),
            x509_svid: concat(chain),
            x509_svid_key: key_pkcs8.to_vec(),
            bundle: concat(authorities),
            hint: String::new(),
        }
    }

    /// Sets the operator hint.
    #[must_use]
    pub fn with_hint(mut self, hint: &str) -> Self {
        hint.clone_into(&mut self.hint);
        self
    }
}

impl X509svidResponse {
    /// An update with these SVIDs and no federated bundle.
    pub fn with(svids: Vec<X509svid>) -> Self {
        Self {
            svids,
            ..Self::default()
        }
    }

    /// Adds the federated bundle of `trust_domain` (a name such as `partner.org`),
    /// keyed by the trust domain's SPIFFE ID as the spec says.
    #[must_use]
    pub fn federate<A: AsRef<[u8]>>(mut self, trust_domain: &str, authorities: &[A]) -> Self {
        self.federated_bundles
            .insert(format!("spiffe://{trust_domain}"), concat(authorities));
        self
    }
}

/// DER items, concatenated, as the Workload API carries chains and bundles.
pub fn concat<A: AsRef<[u8]>>(items: &[A]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|item| item.as_ref().to_vec())
        .collect()
}

/// What a `FetchX509SVID` stream does now.
#[derive(Clone, Debug)]
enum Reply {
    /// Sends this update (again on every change).
    Update(X509svidResponse),
    /// Ends the call with this status.
    Refuse(Code, String),
    /// Accepts the call and sends nothing, as a stuck agent would.
    Silent,
    /// Sends this update and ends the stream at once, as a flapping agent would.
    Flap(X509svidResponse),
}

#[derive(Debug)]
struct State {
    reply: watch::Sender<Reply>,
    /// Bumped to end every open stream.
    epoch: watch::Sender<u64>,
    accepted: watch::Sender<usize>,
    refused: AtomicUsize,
    /// When each call arrived, refused or not.
    arrivals: Mutex<Vec<Instant>>,
    closing: std::sync::atomic::AtomicBool,
    /// JWT bundles by trust domain (as a SPIFFE ID); `None` until set.
    jwt_bundles: watch::Sender<Option<HashMap<String, Vec<u8>>>>,
    /// JWT-SVIDs by audience: (SPIFFE ID, token).
    jwt_svids: Mutex<HashMap<String, Vec<(String, String)>>>,
    jwt_svid_calls: AtomicUsize,
}

/// The fake endpoint. The socket path is reserved at construction;
/// [`serve`](FakeWorkloadApi::serve) listens.
#[derive(Debug)]
pub struct FakeWorkloadApi {
    /// Holds the socket; removed on drop.
    _dir: TempDir,
    socket: PathBuf,
    state: Arc<State>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeWorkloadApi {
    /// A fake that answers `reply` once served.
    pub fn new(reply: X509svidResponse) -> Self {
        Self::with_reply(Reply::Update(reply))
    }

    /// A fake that accepts calls and sends nothing until [`update`](Self::update).
    pub fn silent() -> Self {
        Self::with_reply(Reply::Silent)
    }

    fn with_reply(reply: Reply) -> Self {
        let dir = TempDir::new("wapi");
        Self {
            socket: dir.join("agent.sock"),
            _dir: dir,
            state: Arc::new(State {
                reply: watch::channel(reply).0,
                epoch: watch::channel(0).0,
                accepted: watch::channel(0).0,
                refused: AtomicUsize::new(0),
                arrivals: Mutex::new(Vec::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
                jwt_bundles: watch::channel(None).0,
                jwt_svids: Mutex::new(HashMap::new()),
                jwt_svid_calls: AtomicUsize::new(0),
            }),
            server: None,
        }
    }

    /// The endpoint address, as `SPIFFE_ENDPOINT_SOCKET` would hold it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Starts listening on the socket. Needs a tokio runtime.
    pub fn serve(&mut self) {
        assert!(self.server.is_none(), "already serving");
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).expect("bind the Workload API socket");
        self.state.closing.store(false, Ordering::SeqCst);
        let (shutdown, signal) = oneshot::channel::<()>();
        let service = SpiffeWorkloadApiServer::new(Endpoint {
            state: Arc::clone(&self.state),
        });
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = signal.await;
                })
                .await
                .expect("fake Workload API server");
        });
        self.server = Some((shutdown, task));
    }

    /// Stops the server: open streams end, the socket goes away.
    pub async fn stop(&mut self) {
        let Some((shutdown, task)) = self.server.take() else {
            return;
        };
        // New calls are refused first, so a client reconnecting in between cannot hold
        // a stream open that the graceful shutdown would wait for.
        self.state.closing.store(true, Ordering::SeqCst);
        self.drop_streams();
        let _ = shutdown.send(());
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("fake server stops in time")
            .expect("fake server task");
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Sends `update` on every open stream and to every later caller.
    pub fn update(&self, update: X509svidResponse) {
        self.state.reply.send_replace(Reply::Update(update));
    }

    /// Answers with a gRPC status from now on: open streams end with it, new calls get
    /// it at once.
    pub fn refuse(&self, code: Code, message: &str) {
        self.state
            .reply
            .send_replace(Reply::Refuse(code, message.to_owned()));
    }

    /// From now on, new calls are accepted and get nothing; open streams stay open
    /// and get nothing more.
    pub fn go_silent(&self) {
        self.state.reply.send_replace(Reply::Silent);
    }

    /// From now on every stream gets `update` and is ended right after it, as by an
    /// agent that restarts again and again.
    pub fn flap(&self, update: X509svidResponse) {
        self.state.reply.send_replace(Reply::Flap(update));
    }

    /// Ends every open stream cleanly, as a restarting agent does; the server stays up.
    pub fn drop_streams(&self) {
        self.state.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Streams `bundles` (trust domain as a SPIFFE ID, bundle document) to every
    /// `FetchJWTBundles` caller, now and on every later call.
    pub fn set_jwt_bundles(&self, bundles: &[(&str, Vec<u8>)]) {
        let bundles = bundles
            .iter()
            .map(|(td, doc)| ((*td).to_owned(), doc.clone()))
            .collect();
        self.state.jwt_bundles.send_replace(Some(bundles));
    }

    /// Answers `FetchJWTSVID` for `audience` with `svids` (SPIFFE ID, token).
    pub fn set_jwt_svids(&self, audience: &str, svids: &[(&str, &str)]) {
        let svids = svids
            .iter()
            .map(|(id, token)| ((*id).to_owned(), (*token).to_owned()))
            .collect();
        self.state
            .jwt_svids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(audience.to_owned(), svids);
    }

    /// How many `FetchJWTSVID` calls were answered with tokens.
    pub fn jwt_svid_calls(&self) -> usize {
        self.state.jwt_svid_calls.load(Ordering::SeqCst)
    }

    /// Calls that carried the security header and were served.
    pub fn accepted_calls(&self) -> usize {
        *self.state.accepted.borrow()
    }

    /// Calls refused because the security header was missing.
    pub fn refused_calls(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// When each call arrived so far, in order, whatever its answer.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` calls were served.
    pub async fn wait_accepted(&self, n: usize) {
        let mut rx = self.state.accepted.subscribe();
        tokio::time::timeout(TIMEOUT, rx.wait_for(|calls| *calls >= n))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {n} Workload API calls"))
            .expect("fake state alive");
    }
}

impl Drop for FakeWorkloadApi {
    fn drop(&mut self) {
        if let Some((shutdown, task)) = self.server.take() {
            self.state.closing.store(true, Ordering::SeqCst);
            self.drop_streams();
            let _ = shutdown.send(());
            task.abort();
        }
    }
}

/// The generated service's implementation.
struct Endpoint {
    state: Arc<State>,
}

type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Refuses a call without the security metadata (Workload Endpoint §6).
fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value == "true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn not_served<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not served by the fake Workload API"))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Endpoint {
    type FetchX509SVIDStream = Updates<X509svidResponse>;
    type FetchX509BundlesStream = Updates<X509BundlesResponse>;
    type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let state = Arc::clone(&self.state);
        state
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        let header = request.metadata().get(SECURITY_HEADER);
        if header.is_none_or(|value| value != "true") {
            state.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        if state.closing.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the Workload API is shutting down"));
        }
        let mut replies = state.reply.subscribe();
        let mut epoch = state.epoch.subscribe();
        // A refusal in force answers the call itself, as SPIRE does.
        if let Reply::Refuse(code, message) = &*replies.borrow_and_update() {
            return Err(Status::new(*code, message.clone()));
        }
        state.accepted.send_modify(|calls| *calls += 1);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // The first message goes out at once; later ones on every change.
            replies.mark_changed();
            loop {
                tokio::select! {
                    changed = replies.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let reply = replies.borrow_and_update().clone();
                        match reply {
                            Reply::Update(update) => {
                                if tx.send(Ok(update)).await.is_err() {
                                    return;
                                }
                            }
                            Reply::Refuse(code, message) => {
                                let _ = tx.send(Err(Status::new(code, message))).await;
                                return;
                            }
                            Reply::Silent => {}
                            Reply::Flap(update) => {
                                let _ = tx.send(Ok(update)).await;
                                return;
                            }
                        }
                    }
                    _ = epoch.changed() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_x509_bundles(
        &self,
        _request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        not_served()
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        check_header(&request)?;
        let audience = request.into_inner().audience.join(" ");
        let svids = self
            .state
            .jwt_svids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&audience)
            .cloned()
            .ok_or_else(|| Status::permission_denied("no JWT-SVID for this audience"))?;
        self.state.jwt_svid_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(JwtsvidResponse {
            svids: svids
                .into_iter()
                .map(|(spiffe_id, svid)| Jwtsvid {
                    spiffe_id,
                    svid,
                    hint: String::new(),
                })
                .collect(),
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&request)?;
        let mut bundles = self.state.jwt_bundles.subscribe();
        let mut epoch = self.state.epoch.subscribe();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            bundles.mark_changed();
            loop {
                tokio::select! {
                    changed = bundles.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current = bundles.borrow_and_update().clone();
                        if let Some(bundles) = current
                            && tx.send(Ok(JwtBundlesResponse { bundles })).await.is_err()
                        {
                            return;
                        }
                    }
                    _ = epoch.changed() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn validate_jwtsvid(
        &self,
        _request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        not_served()
    }
}
