//! Generates the test service (with a tonic server) and the rich fixture,
//! whose generated Rust must compile and round-trip.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    wsgrpc_gen::configure()
        .service_generator(tonic_prost_build::configure().service_generator())
        .compile(&["wsgrpc/test/v1/test.proto"], &["../proto"])?;
    wsgrpc_gen::configure().compile(
        &["rich/shop/v1/shop.proto", "rich/common/v1/common.proto"],
        &["../proto/fixtures"],
    )?;
    Ok(())
}
