//! Kubernetes: each revision is a ReplicaSet owned by the Rollout.
