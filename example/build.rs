//! Generates the example's message types, its tonic server and client, and its bridge
//! table from one proto, in one pass, so every type exists once.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The client too: the benchmark calls the service directly to compare.
    let tonic_services = tonic_prost_build::configure().service_generator();
    wsgrpc_gen::configure()
        .service_generator(tonic_services)
        .compile(&["example.proto"], &["../proto"])?;
    Ok(())
}
