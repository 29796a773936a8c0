#!/usr/bin/env bash
# e2e/lib/aws-lbc.sh — the real AWS Load Balancer Controller, run as a host process beside
# an e2e/stack stack: it watches the stack's Kubernetes and drives moto's ELBv2 and EC2.
#
# Usage (with a stack's exports in the environment, from `eval "$(e2e/stack up)"`):
#   e2e/lib/aws-lbc.sh install           build the controller into the cache if missing
#   eval "$(e2e/lib/aws-lbc.sh start)"   start it for $SLUICE_STACK_DIR; stdout is only
#                                        `export` lines
#   e2e/lib/aws-lbc.sh stop [STACK_DIR]  stop it (`e2e/stack down` stops it too)
# Progress goes to stderr.
#
# `start` installs the CRDs (TargetGroupBinding, IngressClassParams, ALBTargetControlConfig)
# and an IngressClass `alb` (controller ingress.k8s.aws/alb, as the Helm chart does), tags
# moto's default subnets for ALB discovery, and prints exports of SLUICE_LBC_VPC_ID (moto's
# default VPC), SLUICE_LBC_SUBNETS (two default subnets in two AZs, comma-separated, for the
# alb.ingress.kubernetes.io/subnets annotation; without it the tagged subnets are found),
# SLUICE_LBC_SECURITY_GROUP (the VPC's default security group) and SLUICE_LBC_CLUSTER (the
# --cluster-name, the value of the elbv2.k8s.aws/cluster tag on what it creates).
#
# Give each Ingress `alb.ingress.kubernetes.io/security-groups: $SLUICE_LBC_SECURITY_GROUP`.
# Without it the controller makes a security group for the ALB and writes rules allowing it
# into each TargetGroupBinding's spec.networking; reconciling those needs the ENIs of the pods'
# nodes, found by the nodes' spec.providerID, which kwok nodes lack. Targets are registered all
# the same, but every TargetGroupBinding then fails ("providerID is not specified for node")
# and is retried every 15 s, with a FailedNetworkReconcile event each time.
#
# Cache: <cache>/aws-lbc-<v>/bin/aws-load-balancer-controller and crds/*.yaml; build log in
# <cache>/logs/aws-lbc-<v>.log.
# Stack dir: logs/aws-lbc.log, aws-lbc/certs (the webhook server's self-signed cert), the pid
# in pids (name aws-lbc, so `e2e/stack down` and `status` see it) and ports in state.
#
# Environment:
#   SLUICE_CACHE            as for e2e/stack
#   SLUICE_LBC_SYNC_PERIOD  --sync-period: how often every Ingress is reconciled again even
#                           without an event, which is when changes made behind the
#                           controller's back (ModifyRule...) are reverted (default 10h, the
#                           controller's own)
#   SLUICE_LBC_DEADLINE     seconds for the controller to be ready (default 120)
#   SLUICE_LBC_ARGS         extra controller flags, split on spaces
set -euo pipefail

readonly LBC_MODULE=sigs.k8s.io/aws-load-balancer-controller
# The module proxy serves no v2/v3 release of this module (its go.mod has no /vN suffix, so
# tags v2.x and later are not valid Go versions): only v1.1.9 (2020, the old v1 controller)
# and this pseudo-version of main, whose version.txt and chart say 3.2.2.
readonly LBC_VERSION=v0.0.0-20260423195125-93ff3b5fdaad

readonly CACHE="${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"
readonly LBC_DIR="$CACHE/aws-lbc-$LBC_VERSION"
readonly LBC_BIN="$LBC_DIR/bin/aws-load-balancer-controller"
readonly LBC_DEADLINE="${SLUICE_LBC_DEADLINE:-120}"
readonly SYNC_PERIOD="${SLUICE_LBC_SYNC_PERIOD:-10h}"
readonly STOP_DEADLINE=10   # seconds between TERM and KILL
readonly PID_NAME=aws-lbc

log() { printf 'aws-lbc: %s\n' "$*" >&2; }
die() { printf 'aws-lbc: ERROR: %s\n' "$*" >&2; exit 1; }

now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:-3}"; }
since() {
  local ms=$(($(now_ms) - $1))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# Paths removed on exit (an unfinished build's staging dirs), and the pid of a running build
# job, stopped on exit so an interrupted install leaves nothing behind.
CLEANUP_PATHS=()
BUILD_PID=""

# kill_tree PID: TERM a build job and its descendants (go, compile, link), by pid.
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
}

on_exit() {
  local rc=$?
  if [[ -n $BUILD_PID ]]; then kill_tree "$BUILD_PID"; fi
  if ((${#CLEANUP_PATHS[@]})); then rm -rf "${CLEANUP_PATHS[@]}"; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------- process bookkeeping
# Same records as e2e/stack (name, pid, start time in clock ticks), so its `down` stops the
# controller too and a recycled pid is never taken for ours.

proc_start_time() {
  local stat rest fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }
  read -ra fields <<<"$rest"
  [[ ${fields[0]} == Z ]] && return 0
  echo "${fields[19]}"
}

proc_is_ours() {
  local st
  st=$(proc_start_time "$1")
  [[ -n $st && $st == "$2" ]]
}

# The "pid start" of the controller recorded in STACK, or nothing.
recorded_pid() {
  [[ -f $1/pids ]] || return 0
  awk -v n="$PID_NAME" '$1 == n { p = $2 " " $3 } END { if (p != "") print p }' "$1/pids"
}

forget_pid() {
  local tmp
  [[ -f $1/pids ]] || return 0
  tmp=$(mktemp "$1/.pids.XXXXXX")
  awk -v n="$PID_NAME" '$1 != n' "$1/pids" >"$tmp"
  mv "$tmp" "$1/pids"
}

state_get() { sed -n "s/^$2=//p" "$1/state" 2>/dev/null | tail -n 1; }

# ---------------------------------------------------------------------------- install

installed() { [[ -x $LBC_BIN && -f $LBC_DIR/crds/elbv2.k8s.aws_targetgroupbindings.yaml ]]; }

build_lbc() {
  local stage=$1 dir
  # No replace directives in its go.mod, so a plain `go install` builds the real main.
  GOBIN="$stage/bin" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X $LBC_MODULE/pkg/version.GitVersion=$LBC_VERSION -X $LBC_MODULE/pkg/version.GitCommit=${LBC_VERSION##*-}" \
    "$LBC_MODULE@$LBC_VERSION"
  # The CRDs come from the same module, so `start` needs neither Go nor the module cache.
  dir=$(go mod download -json "$LBC_MODULE@$LBC_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d $dir/config/crd/bases ]] || { echo "no config/crd/bases in $dir"; return 1; }
  mkdir -p "$stage/crds"
  cp "$dir"/config/crd/bases/*.yaml "$stage/crds/"
  chmod -R u+w "$stage/crds"   # the module cache is read-only
  ls "$stage/crds"
  # `--help` exits non-zero; its first line is the version the binary reports.
  local out
  out=$("$stage/bin/aws-load-balancer-controller" --help 2>&1 || true)
  grep -m 1 '"GitVersion"' <<<"$out"
}

cmd_install() {
  local t0 stage scratch logf lock_fd
  installed && return 0
  command -v go >/dev/null || die "install failed: 'go' not found (Go >= 1.26 builds the controller)"
  mkdir -p "$CACHE/logs"
  # e2e/stack's lock: its install clears $CACHE/.stage-* while holding it.
  exec {lock_fd}>"$CACHE/.lock"
  if ! flock -n "$lock_fd"; then
    log "install: another install holds $CACHE/.lock; waiting"
    flock "$lock_fd"
  fi
  if installed; then exec {lock_fd}>&-; return 0; fi
  stage=$(mktemp -d "$CACHE/.stage-aws-lbc-$LBC_VERSION.XXXXXX")
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/sluice-build.XXXXXX")
  CLEANUP_PATHS+=("$stage" "$scratch")
  logf="$CACHE/logs/aws-lbc-$LBC_VERSION.log"
  log "aws-load-balancer-controller $LBC_VERSION: building (log: $logf)"
  t0=$(now_ms)
  # A background job, waited for: errexit stays on inside the builder.
  GOWORK=off GOFLAGS=-buildvcs=false TMPDIR=$scratch build_lbc "$stage" >"$logf" 2>&1 &
  BUILD_PID=$!
  if ! wait "$BUILD_PID"; then
    BUILD_PID=""
    tail -n 30 "$logf" | sed 's/^/    | /' >&2
    die "install failed (full log: $logf)"
  fi
  BUILD_PID=""
  rm -rf "$LBC_DIR"            # an incomplete older copy
  chmod 755 "$stage"
  mv -T "$stage" "$LBC_DIR"    # appears whole or not at all
  exec {lock_fd}>&-
  log "aws-load-balancer-controller $LBC_VERSION: built in $(since "$t0")"
}

# ------------------------------------------------------------------------------ start

# moto_ec2 ACTION [PARAM=VALUE...]: an EC2 query call to moto. moto checks no signature; the
# Authorization header only tells its all-services server which service and region are meant.
moto_ec2() {
  local action=$1 args=() p
  shift
  for p in "$@"; do args+=(--data-urlencode "$p"); done
  curl -fsS --max-time 10 "$AWS_ENDPOINT_URL/" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20240101/$AWS_REGION/ec2/aws4_request, SignedHeaders=host, Signature=0" \
    --data-urlencode "Action=$action" --data-urlencode "Version=2016-11-15" "${args[@]}"
}

# Values of one XML element, one a line.
xml_values() { grep -o "<$1>[^<]*</$1>" | sed "s/<[^>]*>//g"; }

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

stack_env() {
  local v
  for v in KUBECONFIG AWS_ENDPOINT_URL AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY SLUICE_STACK_DIR; do
    [[ -n ${!v:-} ]] || die "$v is not set: eval \"\$(e2e/stack up)\" first"
  done
  [[ -f $SLUICE_STACK_DIR/state ]] || die "$SLUICE_STACK_DIR is not a stack dir (no state file)"
  command -v kubectl >/dev/null || die "kubectl not on PATH (the stack's exports put it there)"
}

cmd_start() {
  local stack t0 cluster vpc sg subnets=() p=() metrics_port health_port webhook_port pid st rec
  t0=$(now_ms)
  stack_env
  stack=$SLUICE_STACK_DIR
  installed || cmd_install
  rec=$(recorded_pid "$stack")
  if [[ -n $rec ]]; then
    read -r pid st <<<"$rec"
    proc_is_ours "$pid" "$st" && die "already running in $stack (pid $pid)"
    forget_pid "$stack"   # a controller that died: its record goes
  fi
  cluster=$(state_get "$stack" cluster)
  [[ -n $cluster ]] || die "no cluster name in $stack/state"

  # Server-side apply: the CRDs are too large for client-side apply's annotation.
  kubectl apply --server-side --force-conflicts -f "$LBC_DIR/crds/" >/dev/null ||
    die "applying the controller's CRDs failed"
  kubectl wait --for=condition=Established --timeout=60s -f "$LBC_DIR/crds/" >/dev/null ||
    die "the controller's CRDs were not Established within 60s"
  kubectl apply -f - >/dev/null <<'EOF' || die "applying IngressClass alb failed"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: alb
spec:
  controller: ingress.k8s.aws/alb
EOF

  # moto makes a default VPC with one default subnet per AZ; its ids change every start.
  vpc=$(moto_ec2 DescribeVpcs Filter.1.Name=is-default Filter.1.Value.1=true | xml_values vpcId | head -n 1)
  [[ -n $vpc ]] || die "no default VPC in moto at $AWS_ENDPOINT_URL"
  mapfile -t subnets < <(moto_ec2 DescribeSubnets Filter.1.Name=vpc-id "Filter.1.Value.1=$vpc" \
    Filter.2.Name=default-for-az Filter.2.Value.1=true | xml_values subnetId)
  ((${#subnets[@]} >= 2)) || die "fewer than two default subnets in $vpc"
  sg=$(moto_ec2 DescribeSecurityGroups Filter.1.Name=vpc-id "Filter.1.Value.1=$vpc" \
    Filter.2.Name=group-name Filter.2.Value.1=default | xml_values groupId | head -n 1)
  [[ -n $sg ]] || die "no default security group in $vpc"
  # Subnet auto-discovery for internet-facing ALBs wants kubernetes.io/role/elb, as on EKS.
  local args=(ResourceId.1="${subnets[0]}" Tag.1.Key=kubernetes.io/role/elb Tag.1.Value=1) i
  for ((i = 1; i < ${#subnets[@]}; i++)); do args+=("ResourceId.$((i + 1))=${subnets[i]}"); done
  moto_ec2 CreateTags "${args[@]}" >/dev/null || die "tagging the default subnets failed"

  read -ra p <<<"$(free_ports 3)"
  metrics_port=${p[0]} health_port=${p[1]} webhook_port=${p[2]}
  mkdir -p "$stack/aws-lbc/certs" "$stack/logs"
  # No webhook is registered with the API server (nothing calls it), but the manager does
  # not start without a serving cert, and its readiness check is the webhook server's.
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=aws-lbc.local" \
    -keyout "$stack/aws-lbc/certs/tls.key" -out "$stack/aws-lbc/certs/tls.crt" \
    >/dev/null 2>&1 || die "openssl could not make the webhook cert"

  local url=$AWS_ENDPOINT_URL endpoints
  # Every AWS service the controller has a client for, by SDK service ID, points at moto.
  endpoints="EC2=$url,Elastic Load Balancing v2=$url,ACM=$url,WAFV2=$url,WAF Regional=$url"
  endpoints+=",Shield=$url,Resource Groups Tagging API=$url,STS=$url,Global Accelerator=$url"
  local flags=(
    --kubeconfig="$KUBECONFIG"
    --cluster-name="$cluster"
    --aws-region="$AWS_REGION"
    --aws-vpc-id="$vpc"              # else it asks the instance metadata service
    --aws-api-endpoints="$endpoints"
    --aws-max-retries=2
    --enable-leader-election=false
    --metrics-bind-addr="127.0.0.1:$metrics_port"
    --health-probe-bind-addr="127.0.0.1:$health_port"
    --webhook-bind-port="$webhook_port"   # on every address: there is no flag for its host
    --webhook-cert-dir="$stack/aws-lbc/certs"
    --sync-period="$SYNC_PERIOD"
    # moto serves neither Shield nor WAF; the controller would call them on every ALB.
    --enable-shield=false --enable-waf=false --enable-wafv2=false
    # The shared backend SG would need the pods' ENIs, which kwok pods do not have.
    --enable-backend-security-group=false
  )
  local extra=()
  if [[ -n ${SLUICE_LBC_ARGS:-} ]]; then read -ra extra <<<"$SLUICE_LBC_ARGS"; fi
  # No instance metadata here: fail at once instead of waiting for its timeouts.
  AWS_EC2_METADATA_DISABLED=true setsid "$LBC_BIN" "${flags[@]}" "${extra[@]}" \
    </dev/null >"$stack/logs/aws-lbc.log" 2>&1 &
  pid=$!
  st=$(proc_start_time "$pid")
  [[ -n $st ]] || die "the controller exited at once (log: $stack/logs/aws-lbc.log)"
  printf '%s %s %s\n' "$PID_NAME" "$pid" "$st" >>"$stack/pids"
  printf '%s\n' "aws_lbc_port=$health_port" "aws_lbc_metrics_port=$metrics_port" \
    "aws_lbc_webhook_port=$webhook_port" "aws_lbc_vpc_id=$vpc" >>"$stack/state"

  # Ready: the webhook server is up (its /readyz) and the Ingress and TargetGroupBinding
  # controllers have synced their caches and started their workers.
  local deadline=$(($(now_ms) + LBC_DEADLINE * 1000)) logf="$stack/logs/aws-lbc.log"
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$health_port/readyz" 2>/dev/null &&
      grep -q '"Starting workers".*"controller":"ingress"' "$logf" &&
      grep -q '"Starting workers".*"controller":"targetGroupBinding"' "$logf"; do
    if ! proc_is_ours "$pid" "$st"; then
      tail -n 20 "$logf" | sed 's/^/    | /' >&2
      die "the controller exited before it was ready (log: $logf)"
    fi
    (($(now_ms) < deadline)) || die "the controller was not ready within ${LBC_DEADLINE}s (log: $logf)"
    sleep 0.2
  done
  printf 'export SLUICE_LBC_VPC_ID=%q\n' "$vpc"
  printf "export SLUICE_LBC_SUBNETS='%s'\n" "${subnets[0]},${subnets[1]}"   # ids: no quoting needed
  printf 'export SLUICE_LBC_SECURITY_GROUP=%q\n' "$sg"
  printf 'export SLUICE_LBC_CLUSTER=%q\n' "$cluster"
  log "started (pid $pid, health port $health_port, log $logf) in $(since "$t0")"
}

# ------------------------------------------------------------------------------- stop

cmd_stop() {
  local stack=${1:-${SLUICE_STACK_DIR:-}} rec pid st deadline
  [[ -n $stack ]] || die "no stack dir given and SLUICE_STACK_DIR is not set"
  [[ -d $stack ]] || die "no such stack dir: $stack"
  rec=$(recorded_pid "$stack")
  if [[ -z $rec ]]; then log "not started in $stack"; return 0; fi
  read -r pid st <<<"$rec"
  if proc_is_ours "$pid" "$st"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + STOP_DEADLINE * 1000))
    while proc_is_ours "$pid" "$st" && (($(now_ms) < deadline)); do sleep 0.1; done
    if proc_is_ours "$pid" "$st"; then
      log "pid $pid ignored TERM for ${STOP_DEADLINE}s: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    proc_is_ours "$pid" "$st" && die "pid $pid is still running"
  fi
  forget_pid "$stack"
  log "stopped (pid $pid)"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p' >&2
  exit 2
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    *) usage ;;
  esac
}

main "$@"
