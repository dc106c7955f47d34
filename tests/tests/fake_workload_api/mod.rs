//! A SPIFFE Workload API endpoint for tests: a real gRPC server (tonic, HTTP/2) on a
//! Unix socket serving `SpiffeWorkloadAPI/FetchX509SVID` of the spec's
//! `workloadapi.proto`.
//!
//! The three messages of that RPC are written here as prost structs, tag for tag from
//! the spec, and the service as a small tower `Service`: with no other RPC to serve, that
//! is shorter than a build script with a protobuf compiler, and it adds no build
//! dependency. The zt client decodes them with code its own crate generated from the
//! same proto, so a wrong tag or type fails every test here.
//!
//! As the Workload Endpoint spec (§3, §6) asks, a call without the metadata
//! `workload.spiffe.io: true` is refused with `InvalidArgument`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};
use zt_core::X509Svid;
use zt_core::dev::DevCa;

/// The RPC's path: the spec's proto declares no package.
pub(crate) const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";
const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Bound for waits inside the fake.
const TIMEOUT: Duration = Duration::from_secs(20);

// === messages (workloadapi.proto) ===

/// `message X509SVIDRequest {}`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct X509SvidRequest {}

/// `message X509SVIDResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct X509SvidResponse {
    /// `repeated X509SVID svids = 1;`
    #[prost(message, repeated, tag = "1")]
    pub(crate) svids: Vec<X509SvidEntry>,
    /// `repeated bytes crl = 2;`
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(crate) crl: Vec<Vec<u8>>,
    /// `map<string, bytes> federated_bundles = 3;`
    #[prost(map = "string, bytes", tag = "3")]
    pub(crate) federated_bundles: HashMap<String, Vec<u8>>,
}

/// `message X509SVID`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct X509SvidEntry {
    /// `string spiffe_id = 1;`
    #[prost(string, tag = "1")]
    pub(crate) spiffe_id: String,
    /// `bytes x509_svid = 2;` — DER chain, leaf first.
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) x509_svid: Vec<u8>,
    /// `bytes x509_svid_key = 3;` — PKCS#8 DER.
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) x509_svid_key: Vec<u8>,
    /// `bytes bundle = 4;` — DER authorities of the SVID's trust domain.
    #[prost(bytes = "vec", tag = "4")]
    pub(crate) bundle: Vec<u8>,
    /// `string hint = 5;`
    #[prost(string, tag = "5")]
    pub(crate) hint: String,
}

impl X509SvidEntry {
    /// An entry for `svid`, issued by `ca`.
    pub(crate) fn new(svid: &X509Svid, ca: &DevCa) -> Self {
        Self {
            spiffe_id: svid.id().to_string(),
            x509_svid: svid.chain().iter().flat_map(|c| c.to_vec()).collect(),
            x509_svid_key: svid.private_key().secret_der().to_vec(),
            bundle: bundle_der(ca),
            hint: String::new(),
        }
    }

    /// Sets the operator hint.
    pub(crate) fn hint(mut self, hint: &str) -> Self {
        self.hint = hint.to_owned();
        self
    }
}

impl X509SvidResponse {
    /// A response with these SVID entries and no federated bundle.
    pub(crate) fn with(svids: Vec<X509SvidEntry>) -> Self {
        Self {
            svids,
            ..Self::default()
        }
    }

    /// Adds a federated bundle, keyed by the trust domain's SPIFFE ID as the spec says.
    pub(crate) fn federate(mut self, ca: &DevCa) -> Self {
        self.federated_bundles
            .insert(format!("spiffe://{}", ca.trust_domain()), bundle_der(ca));
        self
    }

    /// Adds a federated bundle for the trust domain of `cas` holding all their
    /// authorities.
    pub(crate) fn federate_all(mut self, cas: &[&DevCa]) -> Self {
        let der = cas.iter().flat_map(|ca| bundle_der(ca)).collect();
        if let Some(first) = cas.first() {
            self.federated_bundles
                .insert(format!("spiffe://{}", first.trust_domain()), der);
        }
        self
    }
}

/// A bundle as the Workload API carries it: the authorities' DER, concatenated.
fn bundle_der(ca: &DevCa) -> Vec<u8> {
    ca.bundle()
        .authorities()
        .iter()
        .flat_map(|cert| cert.to_vec())
        .collect()
}

// === server ===

/// What a `FetchX509SVID` stream sends now.
#[derive(Clone, Debug)]
enum Reply {
    Update(X509SvidResponse),
    Refuse(Code, String),
}

struct State {
    reply: watch::Sender<Reply>,
    /// Bumped to end every open stream.
    epoch: watch::Sender<u64>,
    accepted: watch::Sender<usize>,
    refused: AtomicUsize,
    closing: AtomicBool,
}

/// The fake endpoint. The socket path is reserved at construction; [`serve`] listens.
///
/// [`serve`]: FakeWorkloadApi::serve
pub(crate) struct FakeWorkloadApi {
    dir: PathBuf,
    socket: PathBuf,
    state: Arc<State>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeWorkloadApi {
    /// A fake that answers `reply` once served.
    pub(crate) fn new(reply: X509SvidResponse) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Unix socket paths are short (108 bytes): stay near the root of the temp dir.
        let dir = std::env::temp_dir().join(format!("zt-wapi-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("socket directory");
        Self {
            socket: dir.join("agent.sock"),
            dir,
            state: Arc::new(State {
                reply: watch::channel(Reply::Update(reply)).0,
                epoch: watch::channel(0).0,
                accepted: watch::channel(0).0,
                refused: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
            }),
            server: None,
        }
    }

    /// The endpoint address, as `SPIFFE_ENDPOINT_SOCKET` would hold it.
    pub(crate) fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Starts listening on the socket.
    pub(crate) fn serve(&mut self) {
        assert!(self.server.is_none(), "already serving");
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).expect("bind the Workload API socket");
        self.state.closing.store(false, Ordering::SeqCst);
        let (shutdown, signal) = oneshot::channel::<()>();
        let service = WorkloadApi {
            state: Arc::clone(&self.state),
        };
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    service,
                    UnixListenerStream::new(listener),
                    async move {
                        let _ = signal.await;
                    },
                )
                .await
                .expect("fake Workload API server");
        });
        self.server = Some((shutdown, task));
    }

    /// Stops the server: open streams end, the socket goes away.
    pub(crate) async fn stop(&mut self) {
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
    pub(crate) fn update(&self, update: X509SvidResponse) {
        self.state.reply.send_replace(Reply::Update(update));
    }

    /// Answers with a gRPC status from now on: open streams end with it, new calls get
    /// it at once.
    pub(crate) fn refuse(&self, code: Code, message: &str) {
        self.state
            .reply
            .send_replace(Reply::Refuse(code, message.to_owned()));
    }

    /// Ends every open stream cleanly, as a restarting agent does; the server stays up.
    pub(crate) fn drop_streams(&self) {
        self.state.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Calls that carried the security header and were served.
    pub(crate) fn accepted_calls(&self) -> usize {
        *self.state.accepted.borrow()
    }

    /// Calls refused because the security header was missing.
    pub(crate) fn refused_calls(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls were served.
    pub(crate) async fn wait_accepted(&self, n: usize) {
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The gRPC service: routes by path, like generated code would.
#[derive(Clone)]
struct WorkloadApi {
    state: Arc<State>,
}

impl Service<http::Request<tonic::body::Body>> for WorkloadApi {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != FETCH_X509_SVID {
            return Box::pin(async {
                Ok(Status::unimplemented("not served by the fake Workload API").into_http())
            });
        }
        let fetch = FetchX509Svid {
            state: Arc::clone(&self.state),
        };
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<X509SvidResponse, X509SvidRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .server_streaming(fetch, request)
                .await)
        })
    }
}

type UpdateStream = ReceiverStream<Result<X509SvidResponse, Status>>;

/// The `FetchX509SVID` handler.
struct FetchX509Svid {
    state: Arc<State>,
}

impl Service<tonic::Request<X509SvidRequest>> for FetchX509Svid {
    type Response = tonic::Response<UpdateStream>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<X509SvidRequest>) -> Self::Future {
        let state = Arc::clone(&self.state);
        Box::pin(async move {
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
                            }
                        }
                        _ = epoch.changed() => return,
                        () = tx.closed() => return,
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}
