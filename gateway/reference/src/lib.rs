//! Reference model (see the crate description).
