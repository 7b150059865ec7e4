//! `shoal-agent`: the per-node agent binary.

fn main() {
    eprintln!("shoal-agent: not implemented yet");
    std::process::exit(2);
}
