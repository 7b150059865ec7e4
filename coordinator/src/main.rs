//! `shoal-coordinator`: one member of the replicated control plane.

fn main() {
    eprintln!("shoal-coordinator: not implemented yet");
    std::process::exit(2);
}
