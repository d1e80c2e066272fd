//! Compiles proto/events.proto with protox (pure Rust: no protoc to install) and generates the
//! tonic server with tonic-prost-build (the clients are PyPI grpcio's, in
//! scripts/interop_grpc.py).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/events.proto");
    let descriptors = protox::compile(["proto/events.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
