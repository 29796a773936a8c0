//! Application Load Balancer weights: one ModifyRule/ModifyListener per weight change, one read back.
