//! test-analyzer (placeholder, replaced below).

fn main() {}
