//! Test support: namespace lab and packet corpus.
pub mod lab;
pub mod testnet;
pub mod corpus;
pub mod r#gen; // `gen` is a reserved keyword in edition 2024
