//! Sluice: progressive delivery for Kubernetes and Amazon ECS.
//!
//! `engine` decides; everything else observes and applies. See docs/architecture.md.

pub mod analysis;
pub mod api;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod egress;
pub mod engine;
pub mod import;
pub mod logging;
pub mod notify;
pub mod pass;
pub mod platform;
pub mod plugin;
pub mod ports;
pub mod preflight;
pub mod simulate;
pub mod text;
pub mod traffic;
