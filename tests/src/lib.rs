//! Harness for the multi-process tests: start coordinators and agents as real processes.
