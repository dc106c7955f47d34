//! zt in one minute: a development trust domain in memory, an mTLS server that only
//! lets `spiffe://example.org/frontend/**` in, one client it accepts and one it
//! refuses.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::error::Error;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zt_core::dev::DevCa;
use zt_core::rustls::pki_types::ServerName;
use zt_core::{BundleSet, IdMatcher, IdentitySource, PeerIdentity, PeerRole, StaticSource, tls};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // A development CA: real certificates, minted in memory. Never for production.
    let ca = DevCa::new("example.org".parse()?)?;
    let bundles = BundleSet::new().with(ca.bundle());

    let server_identity = StaticSource::new(
        ca.mint(&"spiffe://example.org/billing".parse()?)?,
        bundles.clone(),
    )?;
    let server_config = tls::ServerConfigBuilder::new(server_identity.identity())
        .authorize(IdMatcher::pattern("spiffe://example.org/frontend/**")?)
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("server  spiffe://example.org/billing listening on {addr}");
    println!("        admits spiffe://example.org/frontend/** only");

    // The server reports what it decided for each connection.
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel::<String>();
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let identity = server_identity.identity();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let report = report.clone();
            let verified_since = identity.generation();
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        let reason = tls::rejection_reason(&e).unwrap_or_else(|| e.to_string());
                        let _ = report.send(format!("refused the handshake: {reason}"));
                        return;
                    }
                };
                let peer = PeerIdentity::from_connection(
                    tls.get_ref().1,
                    PeerRole::Client,
                    verified_since,
                );
                match peer {
                    Ok(peer) => {
                        let _ = report.send(format!("accepted {}", peer.id()));
                        let _ = tls
                            .write_all(format!("hello, {}\n", peer.id()).as_bytes())
                            .await;
                    }
                    Err(e) => {
                        let _ = report.send(format!("refused: {e}"));
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });

    for name in [
        "spiffe://example.org/frontend/web",
        "spiffe://example.org/batch",
    ] {
        let client_identity = StaticSource::new(ca.mint(&name.parse()?)?, bundles.clone())?;
        let client_config = tls::ClientConfigBuilder::new(
            client_identity.identity(),
            IdMatcher::exact("spiffe://example.org/billing".parse()?),
        )
        .build()?;
        let connector = TlsConnector::from(Arc::new(client_config));
        let tcp = TcpStream::connect(addr).await?;
        // The name only routes the connection; the server is authorized by SPIFFE ID.
        let outcome = match connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
        {
            Ok(mut tls) => {
                let mut reply = String::new();
                match tls.read_to_string(&mut reply).await {
                    Ok(_) if !reply.is_empty() => {
                        format!("allowed: server said {:?}", reply.trim())
                    }
                    Ok(_) => "refused: connection closed".to_owned(),
                    Err(e) => format!("refused: {e}"),
                }
            }
            Err(e) => format!("refused: {e}"),
        };
        let server_saw = reports.recv().await.unwrap_or_default();
        println!("client  {name}");
        println!("        server {server_saw}");
        println!("        client {outcome}");
    }
    Ok(())
}
