//! `shoalctl`: the operator's command line.

fn main() {
    eprintln!("shoalctl: not implemented yet");
    std::process::exit(2);
}
