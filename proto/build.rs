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
    // Messages holding secret values get a hand-written, redacted `Debug` (src/redacted.rs).
    tonic_prost_build::configure()
        .skip_debug([
            ".shoal.dispatcher.v1.SecretValue",
            ".shoal.control.v1.StackFileRequest",
        ])
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
