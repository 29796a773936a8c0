//! Sluice: progressive delivery for Kubernetes and Amazon ECS.
//!
//! `engine` decides; everything else observes and applies. See docs/architecture.md.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod engine;
pub mod simulate;
