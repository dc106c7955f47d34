//! What re-verifying many open connections' peers costs after a bundle rotation.
//!
//! A server holds one [`PeerIdentity`] per open connection. When its identity
//! source publishes a new snapshot (here a new SVID for the same ID under the same
//! bundle: the rotation every SVID goes through), each peer is re-verified on its
//! next request. [`bursts`] builds `n` peers over a fixed set of distinct client
//! chains (round robin: many connections from few clients), verifies them all
//! under the current snapshot, publishes a new one, and times `reverify` over all
//! `n`. CPU time comes from `/proc/thread-self/schedstat`, which lags by up to a
//! scheduler tick, so small bursts are repeated until they add up to `min_cpu`.
//!
//! ```
//! let bursts = zt_benches::reverify::bursts(4, &[4, 8], std::time::Duration::ZERO)?;
//! assert_eq!(bursts.len(), 2);
//! assert_eq!(bursts[1].peers, 8);
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

use std::error::Error;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::CertificateDer;
use zt_core::dev::DevCa;
use zt_core::{BundleSet, IdentityPublisher, PeerIdentity, PeerRole};

use crate::process::thread_cpu_ns;

/// The cost of one burst of re-verifications.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    /// Peers re-verified (one per connection).
    pub peers: usize,
    /// Distinct client chains among them.
    pub chains: usize,
    /// CPU time of the whole burst, in microseconds (the mean over `repeats`).
    pub cpu_us: f64,
    /// Wall time of the whole burst, in microseconds (the mean over `repeats`).
    pub wall_us: f64,
    /// Bursts timed (each after a publication of its own).
    pub repeats: u32,
}

/// For every `n` of `sizes`: `n` peers over `chains` distinct client chains, all
/// verified, then re-verified after each new snapshot, as many bursts as it takes
/// to spend `min_cpu` (at least one), since the thread's CPU clock advances in
/// scheduler ticks.
///
/// # Errors
///
/// When the dev material cannot be made or a peer fails to verify.
pub fn bursts(
    chains: usize,
    sizes: &[usize],
    min_cpu: Duration,
) -> Result<Vec<Burst>, Box<dyn Error + Send + Sync>> {
    let ca = DevCa::new("example.org".parse()?)?;
    let server = ca.mint(&"spiffe://example.org/api".parse()?)?;
    let server_id = server.id().clone();
    let bundles = BundleSet::new().with(ca.bundle());
    let publisher = IdentityPublisher::new()?;
    publisher.publish(server, bundles.clone())?;
    let identity = publisher.identity();
    let chains: Vec<Vec<CertificateDer<'static>>> = (0..chains.max(1))
        .map(|i| {
            let id = format!("spiffe://example.org/client-{i}").parse()?;
            Ok(ca.mint(&id)?.chain().to_vec())
        })
        .collect::<Result<_, Box<dyn Error + Send + Sync>>>()?;
    let now = SystemTime::now();
    let mut out = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let peers = chains
            .iter()
            .cycle()
            .take(n)
            .map(|chain| PeerIdentity::from_chain(chain.clone(), PeerRole::Client))
            .collect::<Result<Vec<_>, _>>()?;
        for peer in &peers {
            peer.reverify(&identity, now)?;
        }
        let (mut cpu, mut wall, mut repeats) = (0_u64, Duration::ZERO, 0_u32);
        while repeats == 0 || Duration::from_nanos(cpu) < min_cpu {
            // The rotation: a new SVID for the same ID under the same bundle, so a
            // new snapshot of the same identity (an identical one is not published).
            let snapshot = publisher.publish(ca.mint(&server_id)?, bundles.clone())?;
            if peers.iter().any(|peer| peer.is_verified_under(&snapshot)) {
                return Err("the rotation published no new snapshot".into());
            }
            let started = Instant::now();
            let before = thread_cpu_ns();
            for peer in &peers {
                peer.reverify(&identity, now)?;
            }
            cpu += thread_cpu_ns().saturating_sub(before);
            wall += started.elapsed();
            repeats += 1;
        }
        out.push(Burst {
            peers: n,
            chains: chains.len(),
            cpu_us: cpu as f64 / 1e3 / f64::from(repeats),
            wall_us: wall.as_secs_f64() * 1e6 / f64::from(repeats),
            repeats,
        });
    }
    Ok(out)
}
