//! Shoal's node agent: registers with the coordinators and runs its tasks on containerd.

pub mod runtime;
