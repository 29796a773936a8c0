//! Platforms: where revisions run. Kubernetes (ReplicaSets owned by the Rollout) and Amazon ECS
//! (task sets of a service whose deployment controller is EXTERNAL).

pub mod adoption;
pub mod ecs;
pub mod endpoints;
pub mod kubernetes;
pub mod restart;
