//! System interfaces of PAL: the only crate of the workspace allowed
//! `unsafe` code, confined to [`sys`] and documented block by block.
//!
//! The live sources (AF_PACKET rings with fanout, NFQUEUE) will live here
//! (a later issue); today the crate holds the thread-priority call the
//! multi-threaded engine uses.

#![allow(unsafe_code)] // system calls; every block carries a SAFETY comment

pub mod sys;
