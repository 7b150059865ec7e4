//! Harness for the multi-process tests: start coordinators and agents as real processes.

pub mod containerd;
pub mod image;
