//! Compiles the `.proto` files under `proto/proto` with tonic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/control.proto",
        "proto/raft.proto",
        "proto/dispatcher.proto",
        "proto/agent.proto",
        "proto/certificates.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
