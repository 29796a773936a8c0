//! Leader election on a coordination.k8s.io Lease, with a renew deadline.
//!
//! kube-lease-manager acquires and renews the Lease, but while its renewals fail (the API server
//! unreachable, or not answering) it keeps reporting this replica as the leader. A leader cut off
//! that way would go on acting after its Lease expired and another replica took over. So the
//! Lease is also read here, under a timeout: once its last renewal by this replica is older than
//! [`RENEW_DEADLINE`], leadership counts as lost, well before the Lease itself expires.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// How long a Lease stays valid after its last renewal; a follower takes over after that.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// kube-lease-manager renews this long before the Lease would expire: every 5 s.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(10);
/// A leader whose last renewal is older than this stops acting: two renewals missed, with
/// 5 s left before a follower may take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the Lease is read back, and how long one read may take.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Why this replica stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("the leader Lease {lease} is held by {holder}")]
    Taken { lease: String, holder: String },
    #[error("the leader Lease {lease} was last renewed {:.1} s ago, past the renew deadline of {} s", since.as_secs_f64(), RENEW_DEADLINE.as_secs())]
    RenewDeadline { lease: String, since: Duration },
    #[error("the Lease manager stopped")]
    ManagerStopped,
}

/// This replica leads: it holds the Lease, and the manager keeps renewing it.
pub struct Leadership {
    channel: watch::Receiver<bool>,
    /// Dropping the channel releases the Lease and ends this task.
    _manager: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    leases: Api<Lease>,
    lease: String,
    identity: String,
}

/// Waits until this replica holds the Lease `lease` in `namespace` (created when missing).
pub async fn acquire(
    client: &Client,
    lease: &str,
    namespace: &str,
    identity: &str,
) -> Result<Leadership, kube_lease_manager::LeaseManagerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(LEASE_DURATION.as_secs())
        .with_grace(RENEW_BEFORE_EXPIRY.as_secs())
        .build()
        .await?;
    let (mut channel, task) = manager.watch().await;
    info!(%lease, "waiting to become the leader");
    while !*channel.borrow_and_update() {
        if channel.changed().await.is_err() {
            return Err(kube_lease_manager::LeaseManagerError::InconsistentState("the Lease manager stopped".into()));
        }
    }
    info!(%lease, "leading");
    Ok(Leadership {
        channel,
        _manager: task,
        leases: Api::namespaced(client.clone(), namespace),
        lease: lease.to_string(),
        identity: identity.to_string(),
    })
}

impl Leadership {
    /// Returns once this replica must stop acting: the Lease went to another holder, or it has not
    /// been renewed within the renew deadline (also when the API server cannot be reached).
    pub async fn lost(mut self) -> Lost {
        // Acquired just now; the first read below replaces this with the Lease's own renewTime.
        let mut renewed = SystemTime::now();
        loop {
            let since = SystemTime::now().duration_since(renewed).unwrap_or_default();
            let left = RENEW_DEADLINE.saturating_sub(since);
            tokio::select! {
                _ = tokio::time::sleep(left) => {
                    let since = SystemTime::now().duration_since(renewed).unwrap_or_default();
                    return Lost::RenewDeadline { lease: self.lease, since };
                }
                changed = self.channel.changed() => {
                    if changed.is_err() {
                        return Lost::ManagerStopped;
                    }
                    if !*self.channel.borrow_and_update() {
                        let holder = self.holder().await.unwrap_or_else(|| "another replica".into());
                        return Lost::Taken { lease: self.lease, holder };
                    }
                }
                read = read_after(&self.leases, &self.lease) => match read {
                    Some(lease) => match holder_and_renewal(&lease) {
                        (Some(holder), Some(time)) if holder == self.identity => renewed = time,
                        (Some(holder), _) if holder != self.identity => return Lost::Taken { lease: self.lease, holder },
                        _ => {}
                    },
                    None => warn!(lease = %self.lease, "could not read the leader Lease; still leading until the renew deadline"),
                },
            }
        }
    }

    async fn holder(&self) -> Option<String> {
        let lease = tokio::time::timeout(CHECK_PERIOD, self.leases.get(&self.lease)).await.ok()?.ok()?;
        holder_and_renewal(&lease).0
    }
}

/// The Lease, read after one check period; `None` when the read failed or took too long.
async fn read_after(leases: &Api<Lease>, name: &str) -> Option<Lease> {
    tokio::time::sleep(CHECK_PERIOD).await;
    tokio::time::timeout(CHECK_PERIOD, leases.get(name)).await.ok()?.ok()
}

/// The holder and last renewal time written in the Lease. The renewal time comes from this
/// process's own clock (the manager writes it), so comparing it with `SystemTime::now()` is free
/// of clock skew between nodes.
fn holder_and_renewal(lease: &Lease) -> (Option<String>, Option<SystemTime>) {
    let spec = lease.spec.as_ref();
    let holder = spec.and_then(|s| s.holder_identity.clone());
    let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| SystemTime::from(t.0));
    (holder, renewed)
}
