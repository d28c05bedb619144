//! Test support: namespace lab and packet corpus.
pub mod corpus;
pub mod domain_packets;
pub mod feed_server;
pub mod r#gen;
pub mod lab;
pub mod testnet; // `gen` is a reserved keyword in edition 2024
