//! Corpus tests (filled in next).
