//! Prometheus metrics for the SOC (see the crate description).
//!
//! The daemon fills a [`Snapshot`] (plain data, absolute values) whenever a scraper asks;
//! [`render`] turns it into the text exposition through a custom `prometheus` collector, and
//! [`MetricsServer`] serves it over HTTP or HTTPS (optionally mutual TLS). The metric names,
//! types, labels and help texts are listed once, in [`catalogue`]; METRICS.md is generated from
//! that list.
pub mod catalogue;
mod error;
mod example;
mod render;
mod server;
pub mod snapshot;

pub use error::MetricsError;
pub use example::example;
pub use render::{CONTENT_TYPE, Exposition, SnapshotCollector, SnapshotSource, families, render};
pub use server::{Limits, MetricsConfig, MetricsServer, MetricsTls, serve};
pub use snapshot::Snapshot;
