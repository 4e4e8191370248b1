//! Generates the example's message types, its tonic server and its bridge
//! table from one proto, in one pass, so every type exists once.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tonic_server = tonic_prost_build::configure()
        .build_client(false)
        .service_generator();
    wsgrpc_gen::configure()
        .service_generator(tonic_server)
        .compile(&["example.proto"], &["../proto"])?;
    Ok(())
}
