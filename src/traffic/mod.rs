//! Traffic routers: how the split between stable and canary is set and read back.
//! Without a router the split follows the replica ratio and nothing is called.

pub mod alb;
