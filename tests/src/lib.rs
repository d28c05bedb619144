//! Test support: namespace lab and packet corpus.
