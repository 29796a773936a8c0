//! A leader cut off from the API server stops acting within the renew deadline, before its Lease
//! expires and a follower takes over: never two leaders at once.
//!
//! The leader reaches the API server through a TCP proxy in this test; cutting the proxy keeps
//! every connection open but forwards nothing more, as a partition does (requests hang, no
//! error comes back). The follower and the test reach the API server directly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::controller::ControllerProcess;
use crate::support::{Stack, repo, wait_for};

/// The controller's lease duration and renew deadline (`src/controller/leadership.rs`).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Room for a loaded machine: a process noticing, logging and exiting.
const MARGIN: Duration = Duration::from_secs(3);

/// Forwards TCP connections to `upstream` until cut; then holds every connection open, silent.
struct Partition {
    port: u16,
    cut: watch::Sender<bool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn start(upstream: String) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_seen) = watch::channel(false);
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let keep = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *cut_seen.borrow() {
                    keep.lock().unwrap().push(client);
                    continue;
                }
                let (upstream, keep, mut cut_seen) = (upstream.clone(), keep.clone(), cut_seen.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    let was_cut = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut_seen.wait_for(|cut| *cut) => true,
                    };
                    if was_cut {
                        keep.lock().unwrap().push(client);
                    }
                });
            }
        });
        Partition { port, cut, held, task }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
        self.held.lock().unwrap().clear();
    }
}

/// Writes the admin kubeconfig to `path`, pointed at the local `port` when given; returns the
/// API server's address.
fn kubeconfig_through(stack: &Stack, port: Option<u16>, path: &std::path::Path) -> String {
    let admin = stack.kubectl(&["config", "view", "--raw", "--flatten", "--minify", "-o", "json"]);
    let mut config: serde_json::Value = serde_json::from_slice(&admin.stdout).expect("admin kubeconfig");
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap().to_string();
    let address = server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string();
    if let Some(port) = port {
        let host = address.rsplit_once(':').map(|(host, _)| host).unwrap_or(&address);
        let scheme = if server.starts_with("https") { "https" } else { "http" };
        config["clusters"][0]["cluster"]["server"] = format!("{scheme}://{host}:{port}").into();
    }
    std::fs::write(path, config.to_string()).unwrap();
    address
}

fn lease_state(lease: &Lease) -> (Option<String>, Option<SystemTime>) {
    let spec = lease.spec.as_ref();
    (spec.and_then(|s| s.holder_identity.clone()), spec.and_then(|s| s.renew_time.as_ref()).map(|t| SystemTime::from(t.0)))
}

register_test!(50, leader_cut_off_from_the_api_server_stops_before_its_lease_expires);
pub async fn leader_cut_off_from_the_api_server_stops_before_its_lease_expires(stack: Arc<Stack>) {
    let crds = stack.kubectl(&["apply", "-f", repo().join("crds").to_str().unwrap()]);
    assert!(crds.status.success(), "CRDs: {}", String::from_utf8_lossy(&crds.stderr));
    let dir = stack.dir.join(format!("leadership-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let direct = dir.join("direct.kubeconfig");
    let upstream = kubeconfig_through(&stack, None, &direct);
    let partition = Partition::start(upstream).await;
    let proxied = dir.join("proxied.kubeconfig");
    kubeconfig_through(&stack, Some(partition.port), &proxied);

    let lease_name = format!("sluice-partition-{}", std::process::id());
    let args = ["--leader-election", "--lease-name", lease_name.as_str()];
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"));
    let start = |name: &str, kubeconfig: &std::path::Path| {
        let env = [("POD_NAMESPACE", "default"), ("POD_NAME", name), ("RUST_LOG", "info,kube_lease_manager=warn")];
        ControllerProcess::start(binary, kubeconfig, &stack.aws_endpoint, &dir.join(format!("{name}.log")), &args, &env)
    };
    let leases: Api<Lease> = Api::namespaced(stack.kube().await, "default");
    let read = || async { leases.get(&lease_name).await.ok().map(|l| lease_state(&l)) };

    let mut leader = start("leader", &proxied);
    wait_for("the leader to take the Lease", Duration::from_secs(60), || async {
        matches!(read().await, Some((Some(holder), _)) if holder == "leader").then_some(())
    })
    .await;
    let mut follower = start("follower", &direct);
    // A renewal or two through the proxy, so the leader is renewing when it is cut off.
    let (_, first) = read().await.unwrap();
    wait_for("a renewal", Duration::from_secs(20), || async { (read().await.unwrap().1 != first).then_some(()) }).await;
    assert!(leader.exited().is_none() && follower.exited().is_none(), "both run");

    partition.cut();
    let cut_at = Instant::now();
    let (status, stopped_at) = loop {
        if let Some(status) = leader.exited() {
            break (status, SystemTime::now());
        }
        assert!(cut_at.elapsed() < RENEW_DEADLINE + LEASE_DURATION, "the cut-off leader still runs after {:?}", cut_at.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stopped_after = cut_at.elapsed();
    let log = std::fs::read_to_string(dir.join("leader.log")).unwrap();
    println!("    the leader stopped {stopped_after:?} after the cut ({status})");
    assert!(!status.success(), "it exits non-zero, so its Deployment restarts it as a follower");
    assert!(log.contains("renew deadline"), "the log says why:\n{log}");
    assert!(stopped_after <= RENEW_DEADLINE + MARGIN, "stopped {stopped_after:?} after the cut, past the renew deadline");

    // The last renewal that reached the API server is the one the follower waits out.
    let (holder, last_renewal) = read().await.unwrap();
    let last_renewal = last_renewal.unwrap();
    if holder.as_deref() == Some("leader") {
        let expiry = last_renewal + LEASE_DURATION;
        assert!(stopped_at < expiry, "the leader stopped at {stopped_at:?}, after its Lease expired at {expiry:?}");
    }
    wait_for("the follower to take over", LEASE_DURATION + Duration::from_secs(20), || async {
        matches!(read().await, Some((Some(holder), _)) if holder == "follower").then_some(())
    })
    .await;
    let lease = leases.get(&lease_name).await.unwrap();
    let acquired = SystemTime::from(lease.spec.unwrap().acquire_time.unwrap().0);
    assert!(acquired > stopped_at, "the follower took the Lease at {acquired:?}, before the leader stopped at {stopped_at:?}");
    assert!(follower.exited().is_none(), "the follower leads on");
    drop(follower);
    drop(partition);
    let _ = leases.delete(&lease_name, &Default::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
