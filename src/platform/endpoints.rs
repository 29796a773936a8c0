//! Where a revision's pods take traffic: the ready endpoints of the role Services'
//! EndpointSlices. These are what the AWS Load Balancer Controller registers with a target group
//! (a TargetGroupBinding of target type `ip`), so a revision's addresses matched against the
//! group's healthy targets say how much of it the load balancer can reach.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

/// The label the EndpointSlice controller puts on a Service's slices.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The API server cuts a `generateName` to this length before it adds five random characters;
/// a ReplicaSet's pods are generated from `<replica set name>-`.
const GENERATED_PREFIX_MAX: usize = 58;

/// The EndpointSlices of `services` in `namespace`, in one list call.
pub async fn slices(client: &kube::Client, namespace: &str, services: &[String]) -> Result<Vec<EndpointSlice>, kube::Error> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{SERVICE_NAME_LABEL} in ({})", services.join(","));
    Ok(api.list(&ListParams::default().labels(&selector)).await?.items)
}

/// The ready endpoint addresses of each revision, given each revision's ReplicaSet name. An
/// endpoint counts for the revision whose ReplicaSet generated its pod's name; one whose name
/// could have come from two of them (names cut to the same prefix) counts for neither.
pub fn by_revision(slices: &[EndpointSlice], replica_sets: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let prefixes: Vec<(&str, String)> = replica_sets.iter().map(|(revision, name)| (*revision, pod_name_prefix(name))).collect();
    let mut addresses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let endpoints = slices.iter().flat_map(|slice| slice.endpoints.iter());
    // `ready` unset means ready; a terminating endpoint is not ready.
    let ready = endpoints.filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
    for endpoint in ready {
        let Some(pod) = endpoint.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| r.name.as_deref()) else {
            continue;
        };
        let mut owners = prefixes.iter().filter(|(_, prefix)| pod.starts_with(prefix.as_str()));
        if let (Some((revision, _)), None) = (owners.next(), owners.next()) {
            addresses.entry(revision.to_string()).or_default().extend(endpoint.addresses.iter().cloned());
        }
    }
    addresses
}

fn pod_name_prefix(replica_set: &str) -> String {
    let mut prefix = format!("{replica_set}-");
    prefix.truncate(GENERATED_PREFIX_MAX);
    prefix
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    use super::*;

    fn endpoint(pod: &str, ip: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions { ready, ..Default::default() }),
            target_ref: Some(ObjectReference { kind: Some("Pod".into()), name: Some(pod.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn slice(endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice { address_type: "IPv4".into(), endpoints, ..Default::default() }
    }

    #[test]
    fn ready_endpoints_count_for_the_revision_whose_replica_set_named_the_pod() {
        let slices = [
            slice(vec![endpoint("web-aaaa-x1", "10.0.0.1", Some(true)), endpoint("web-bbbb-x2", "10.0.0.2", None)]),
            slice(vec![endpoint("web-aaaa-x3", "10.0.0.3", Some(false)), endpoint("other-x4", "10.0.0.4", Some(true))]),
        ];
        let found = by_revision(&slices, &[("aaaa", "web-aaaa"), ("bbbb", "web-bbbb")]);
        assert_eq!(found["aaaa"], BTreeSet::from(["10.0.0.1".to_string()]), "a terminating endpoint is not ready");
        assert_eq!(found["bbbb"], BTreeSet::from(["10.0.0.2".to_string()]), "unset readiness is ready");
        assert_eq!(found.len(), 2, "a pod of no revision counts for none");
    }

    #[test]
    fn a_pod_name_cut_to_a_prefix_two_revisions_share_counts_for_neither() {
        let long = "a".repeat(60);
        let (first, second) = (format!("{long}-aaaa"), format!("{long}-bbbb"));
        let pod = format!("{}xyz12", &first[..GENERATED_PREFIX_MAX]);
        let found = by_revision(&[slice(vec![endpoint(&pod, "10.0.0.1", Some(true))])], &[("aaaa", &first), ("bbbb", &second)]);
        assert!(found.is_empty());
    }
}
