//! TCP stream reassembly.
