//! Data-path loader.
