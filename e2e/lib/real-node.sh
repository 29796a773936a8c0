# e2e/lib/real-node.sh — the real node of e2e/stack, sourced by it.
#
# One node that runs real containers beside the kwok fake ones: containerd and runc from
# Debian, a kubelet and kube-proxy built from the control plane's Kubernetes module, CNI from
# Debian's plugins (a bridge with host-local addresses), and a pause image built here. No
# registry is reachable, so images are imported into containerd (`e2e/stack import`).
#
# The node and its kube-proxy own host-wide things (a bridge, iptables chains, cgroups named
# kubepods), so one real node runs on a machine at a time: `up` claims the machine in
# $CACHE/real-node.claim and `down` releases it.
#
# Layout in the stack dir: node/containerd.toml, node/containerd/{root,state,containerd.sock},
# node/cni/{conf,ipam}, node/kubelet.yaml, node/kubelet/ (root dir), node/kube-proxy.yaml.

readonly REAL_NODE_NAME=sluice-real-0
readonly REAL_NODE_BRIDGE=sluice0
readonly REAL_NODE_POD_CIDR=10.244.0.0/24
readonly REAL_NODE_SERVICE_IP=10.0.0.1   # the kubernetes Service's address under kwokctl
readonly PAUSE_IMAGE=sluice.local/pause:1
readonly NODE_DEBIAN_PACKAGES=(containerd runc buildah iptables containernetworking-plugins)
readonly CNI_BIN_DIR=/usr/lib/cni
readonly REAL_NODE_CLAIM="$CACHE/real-node.claim"
readonly NODE_DIR="$CACHE/k8s-node-$K8S_VERSION"
readonly PAUSE_ARCHIVE="$NODE_DIR/images/pause.tar"

# The address the host answers on from the pod network: its own primary address.
host_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1
}

node_installed() {
  [[ -x $NODE_DIR/bin/kubelet && -x $NODE_DIR/bin/kube-proxy && -f $PAUSE_ARCHIVE ]] || return 1
  command -v containerd >/dev/null && command -v runc >/dev/null && command -v buildah >/dev/null &&
    command -v iptables >/dev/null && [[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local ]]
}

install_node_packages() {
  local package missing=()
  for package in containerd runc buildah iptables; do
    command -v "$package" >/dev/null || missing+=("$package")
  done
  [[ -x $CNI_BIN_DIR/bridge ]] || missing+=(containernetworking-plugins)
  ((${#missing[@]})) || return 0
  local logf="$CACHE/logs/node-apt.log" t0
  t0=$(now_ms)
  log "real node: installing Debian packages ${missing[*]} (log: $logf)"
  ((EUID == 0)) || die "install failed: the real node needs root (containerd, kubelet, iptables)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$logf" 2>&1; then
    apt-get update >>"$logf" 2>&1 || die "install failed: apt-get update (see $logf)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$logf" 2>&1 ||
      die "install failed: ${missing[*]} (see $logf)"
  fi
  log "real node: packages installed in $(since "$t0")"
}

# buildah with its storage in a scratch dir (vfs: no overlay mounts to clean up), no daemon.
buildah_in() {
  local store=$1
  shift
  buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"
}

# The kubelet and kube-proxy, built like the control plane, and the pause image: a static
# C program that sleeps until it is told to stop, the only process of every pod sandbox.
build_node() {
  local stage=$1 gomod staging_version="v0.${K8S_VERSION#v1.}" m
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local work="$TMPDIR/node-build"
  mkdir -p "$work" "$stage/images"
  gomod=$(go_mod_file "k8s.io/kubernetes@$K8S_VERSION")
  local staging=()
  mapfile -t staging < <(awk '$1 == "require" { $1 = ""; $0 = substr($0, 2) }
                              $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod")
  {
    echo "module sluice.local/node-build"
    grep -E '^(go|godebug) ' "$gomod"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    for m in "${staging[@]}"; do echo "replace $m => $m $staging_version"; done
    echo "tool k8s.io/kubernetes/cmd/kubelet"
    echo "tool k8s.io/kubernetes/cmd/kube-proxy"
  } >"$work/go.mod"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  (cd "$work" && go mod tidy &&
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$stage/bin/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  "$stage/bin/kubelet" --version

  cat >"$work/pause.c" <<'EOF'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int s) { (void)s; _exit(0); }
int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
EOF
  gcc -Os -static -s -o "$work/pause" "$work/pause.c"
  local container
  container=$(buildah_in "$work/buildah" from scratch)
  buildah_in "$work/buildah" copy "$container" "$work/pause" /pause
  buildah_in "$work/buildah" config --entrypoint '["/pause"]' --user 65535:65535 "$container"
  buildah_in "$work/buildah" commit --quiet "$container" "oci-archive:$stage/images/pause.tar:$PAUSE_IMAGE"
}

cmd_install_node() {
  install_node_packages
  if [[ ! -x $NODE_DIR/bin/kubelet || ! -f $PAUSE_ARCHIVE ]]; then
    command -v go >/dev/null || die "install failed: 'go' not found (it builds the kubelet and kube-proxy)"
    export GOWORK=off GOFLAGS="-buildvcs=false"
    build_into_cache "kubelet and kube-proxy $K8S_VERSION" "$NODE_DIR" images/pause.tar build_node
  fi
  node_installed || die "install failed: real node components missing (see $CACHE/logs)"
}

# ------------------------------------------------------------------------- claim

# claim_machine STACK: take the machine's one real node, or fail naming who holds it.
claim_machine() {
  local stack=$1 holder
  exec {claim_fd}>"$REAL_NODE_CLAIM.lock"
  flock "$claim_fd"
  if [[ -f $REAL_NODE_CLAIM ]]; then
    holder=$(<"$REAL_NODE_CLAIM")
    if [[ -d $holder && -f $holder/pids ]] && stack_has_live_pids "$holder"; then
      flock -u "$claim_fd"
      die "a real node already runs on this machine, in stack $holder (e2e/stack down $holder)"
    fi
  fi
  echo "$stack" >"$REAL_NODE_CLAIM"
  flock -u "$claim_fd"
}

release_machine() {
  local stack=$1
  [[ -f $REAL_NODE_CLAIM && $(<"$REAL_NODE_CLAIM") == "$stack" ]] && rm -f "$REAL_NODE_CLAIM"
  return 0
}

stack_has_live_pids() {
  local name pid st
  while read -r name pid st; do
    proc_is_ours "$pid" "$st" && return 0
  done <"$1/pids"
  return 1
}

# ------------------------------------------------------------------------- up

# What kwokctl's configuration gains when the stack has a real node (appended to kwok.yaml):
# the API server answers pods (on every address; the pod network reaches the host's), its
# certificate names the kubernetes Service's address, which in-cluster clients dial, and it
# dials kubelets by address (`kubectl logs`), as no DNS names the node; kwok manages only its
# own nodes and their pods, never the real one. (Patches in the file, not --extra-args:
# kwokctl v0.8.0 mixes up two components' --extra-args.)
real_node_kwok_config() {
  cat <<EOF
  kubeApiserverCertSANs: ["$REAL_NODE_SERVICE_IP"]
componentsPatches:
  - name: kube-apiserver
    extraArgs:
      - {key: bind-address, value: 0.0.0.0}
      - {key: kubelet-preferred-address-types, value: InternalIP}
  - name: kwok-controller
    extraArgs:
      - {key: manage-all-nodes, value: "false"}
      - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
EOF
}

ctr_in() {
  local stack=$1
  shift
  ctr --address "$stack/node/containerd/containerd.sock" --namespace k8s.io "$@"
}

write_node_configs() {
  local stack=$1 ip=$2 kubelet_port=$3 kubelet_healthz_port=$4 proxy_healthz_port=$5 proxy_metrics_port=$6
  local dir="$stack/node"
  mkdir -p "$dir/cni/conf" "$dir/cni/ipam" "$dir/containerd" "$dir/kubelet" "$dir/kubelet-pki" "$dir/pod-logs"
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  # Lowering a process's OOM score needs CAP_SYS_RESOURCE, which this host may not grant.
  restrict_oom_score_adj = true
  # Network namespaces under the stack dir, so down finds exactly this node's.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$dir/cni/conf"
EOF
  # No masquerade: pods only talk to each other and to the host, which routes the bridge.
  cat >"$dir/cni/conf/10-sluice.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "sluice", "plugins": [
  {"type": "bridge", "bridge": "$REAL_NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$REAL_NODE_POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni/ipam"}},
  {"type": "loopback"}]}
EOF
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
address: $ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
# The API server of this stack presents no client certificate to kubelets (kubectl logs).
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
imageServiceEndpoint: unix://$dir/containerd/containerd.sock
podLogsDir: $dir/pod-logs
serializeImagePulls: false
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
enforceNodeAllocatable: []
resolvConf: /etc/resolv.conf
nodeStatusUpdateFrequency: 4s
# kube-proxy owns the iptables rules; the kubelet adds none that would outlive it.
makeIPTablesUtilChains: false
EOF
  # --masquerade-all: a pod calling a Service whose endpoint shares its bridge gets the answer
  # back through the host, where the translation is undone, without br_netfilter rules.
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $stack/kubeconfig}
hostnameOverride: $REAL_NODE_NAME
mode: iptables
clusterCIDR: $REAL_NODE_POD_CIDR
iptables: {masqueradeAll: true}
healthzBindAddress: 127.0.0.1:$proxy_healthz_port
metricsBindAddress: 127.0.0.1:$proxy_metrics_port
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# start_real_node STACK: containerd, the pause image, the kubelet and kube-proxy; the fake
# nodes are tainted so that every pod of this stack lands on the real one.
start_real_node() {
  local stack=$1 ip t0 p=()
  t0=$(now_ms)
  ip=$(host_ip)
  [[ -n $ip ]] || die "real node: no host address found (ip route get)"
  read -ra p <<<"$(free_ports 4)"
  write_state "$stack" "real_node=$REAL_NODE_NAME" "host_ip=$ip" "kubelet_port=${p[0]}" \
    "kubelet_healthz_port=${p[1]}" "kube_proxy_healthz_port=${p[2]}"
  write_node_configs "$stack" "$ip" "${p[@]}"

  local pid
  pid=$(start_daemon "$stack" containerd containerd --config "$stack/node/containerd.toml")
  local deadline=$(($(now_ms) + 30000))
  until ctr_in "$stack" version >/dev/null 2>&1; do
    proc_is_ours "$pid" "$(proc_start_time "$pid")" || die "containerd exited (log: $stack/logs/containerd.log)"
    (($(now_ms) < deadline)) || die "containerd not answering within 30s (log: $stack/logs/containerd.log)"
    sleep 0.1
  done
  ctr_in "$stack" images import "$PAUSE_ARCHIVE" >>"$stack/logs/containerd-import.log" 2>&1 ||
    die "importing the pause image failed (log: $stack/logs/containerd-import.log)"

  pid=$(start_daemon "$stack" kubelet "$NODE_DIR/bin/kubelet" --config="$stack/node/kubelet.yaml" \
    --kubeconfig="$stack/kubeconfig" --root-dir="$stack/node/kubelet" --cert-dir="$stack/node/kubelet-pki" \
    --hostname-override="$REAL_NODE_NAME" --node-ip="$ip" --node-labels=sluice.dev/real-node=true)
  local proxy_pid
  proxy_pid=$(start_daemon "$stack" kube-proxy "$NODE_DIR/bin/kube-proxy" --config="$stack/node/kube-proxy.yaml")

  local kubectl=("$K8S_DIR/bin/kubectl" --kubeconfig "$stack/kubeconfig")
  deadline=$(($(now_ms) + KUBE_DEADLINE * 1000))
  until "${kubectl[@]}" get node "$REAL_NODE_NAME" >/dev/null 2>&1; do
    (($(now_ms) < deadline)) || die "the real node did not register within ${KUBE_DEADLINE}s (log: $stack/logs/kubelet.log)"
    sleep 0.2
  done
  "${kubectl[@]}" wait --for=condition=Ready "node/$REAL_NODE_NAME" --timeout="${KUBE_DEADLINE}s" >/dev/null ||
    die "the real node is not Ready (log: $stack/logs/kubelet.log)"
  wait_http kube-proxy "http://127.0.0.1:${p[2]}/healthz" 60 \
    "$proxy_pid" "$(proc_start_time "$proxy_pid")" "$stack/logs/kube-proxy.log"
  "${kubectl[@]}" taint nodes --overwrite -l '!sluice.dev/real-node' kwok.x-k8s.io/node=fake:NoSchedule >/dev/null
  start_daemon "$stack" pod-targets "$0" pod-targets "$stack" >/dev/null
  log "up: real node $REAL_NODE_NAME Ready at $ip in $(since "$t0")"
}

# cmd_pod_targets STACK: every 2 s, write the scrape targets of Prometheus: the running pods
# annotated prometheus.io/scrape: "true", at their IP and prometheus.io/port, labelled with
# their namespace, name and labels. Renamed into place, so Prometheus never reads half a file.
cmd_pod_targets() {
  local stack=$1 out="$1/prometheus/pod-targets.json"
  local kubectl=("$K8S_DIR/bin/kubectl" --kubeconfig "$stack/kubeconfig")
  while sleep 2; do
    "${kubectl[@]}" get pods --all-namespaces -o json 2>/dev/null | "$MOTO_DIR/bin/python" -c '
import json, re, sys
groups = []
for pod in json.load(sys.stdin)["items"]:
    meta, status = pod["metadata"], pod.get("status", {})
    notes = meta.get("annotations") or {}
    if notes.get("prometheus.io/scrape") != "true" or not status.get("podIP") or status.get("phase") != "Running":
        continue
    labels = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in (meta.get("labels") or {}).items()}
    labels.update(namespace=meta["namespace"], pod=meta["name"])
    groups.append({"targets": [status["podIP"] + ":" + notes.get("prometheus.io/port", "8080")], "labels": labels})
print(json.dumps(groups))' >"$out.tmp" && mv "$out.tmp" "$out"
  done
}

# ------------------------------------------------------------------------- import

# cmd_import ARCHIVE... : import OCI archives into the real node's containerd.
cmd_import() {
  local stack archive
  stack=$(stack_dir_arg "")
  [[ -n $(state_get "$stack" real_node) ]] || die "stack $stack has no real node (start it with e2e/stack up --real-node)"
  for archive in "$@"; do
    [[ -f $archive ]] || die "no such image archive: $archive"
    ctr_in "$stack" images import "$archive" >>"$stack/logs/containerd-import.log" 2>&1 ||
      die "importing $archive failed (log: $stack/logs/containerd-import.log)"
    log "import: $archive"
  done
}

# ------------------------------------------------------------------------- down

# stop_named STACK NAME: stop one recorded process (TERM, then KILL after the deadline).
stop_named() {
  local stack=$1 want=$2 name pid st deadline
  while read -r name pid st; do
    [[ $name == "$want" ]] || continue
    proc_is_ours "$pid" "$st" || continue
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + STOP_DEADLINE * 1000))
    while proc_is_ours "$pid" "$st" && (($(now_ms) < deadline)); do sleep 0.1; done
    proc_is_ours "$pid" "$st" && kill -KILL "$pid" 2>/dev/null
  done <"$stack/pids"
  return 0
}

# What `kube-proxy --cleanup` leaves of the KUBE-* chains (its canaries): the jumps to them from
# the built-in chains, then the chains. Only one real node runs per machine, so they are ours.
remove_kube_chains() {
  local table rule chain
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A/-D/' |
      while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null || true; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# teardown_real_node STACK: the kubelet first (it would restart what follows), then every
# container through containerd, kube-proxy's rules, containerd; then the mounts, network
# namespaces, bridge and cgroups the node made.
teardown_real_node() {
  local stack=$1 id rc=0
  [[ -n $(state_get "$stack" real_node) ]] || return 0
  stop_named "$stack" kubelet
  if [[ -S $stack/node/containerd/containerd.sock ]]; then
    for id in $(ctr_in "$stack" tasks ls -q 2>/dev/null); do ctr_in "$stack" tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
    local deadline=$(($(now_ms) + 10000))
    for id in $(ctr_in "$stack" tasks ls -q 2>/dev/null); do
      until ctr_in "$stack" tasks delete "$id" >/dev/null 2>&1 || (($(now_ms) > deadline)); do sleep 0.2; done
    done
    for id in $(ctr_in "$stack" containers ls -q 2>/dev/null); do ctr_in "$stack" containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_named "$stack" kube-proxy
  [[ -f $stack/node/kube-proxy.yaml ]] &&
    "$NODE_DIR/bin/kube-proxy" --config="$stack/node/kube-proxy.yaml" --cleanup >>"$stack/logs/kube-proxy.log" 2>&1
  remove_kube_chains
  stop_named "$stack" containerd
  local mount
  while read -r mount; do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || { log "could not unmount $mount"; rc=1; }
  done < <(findmnt -rn -o TARGET | grep -F "$stack/" | sort -r)
  ip link show "$REAL_NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$REAL_NODE_BRIDGE"
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/kubepods; do
    [[ -d $hierarchy ]] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  release_machine "$stack"
  return "$rc"
}
