//! `buf generate` with the plugin as a local plugin, configured by the
//! checked-in `example/buf.gen.yaml`, writes what the build.rs path writes:
//! the same Rust and TypeScript, file for file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{EXAMPLE, FIXTURES, Fixture, read_tree, repo_root, run_buf};

/// Where `example/buf.gen.yaml` puts each output, relative to buf's output
/// directory.
const RUST_OUT: &str = "gen/rust";
const TYPESCRIPT_OUT: &str = "client/src/gen";

/// `example/buf.gen.yaml` with this crate's plugin binary in place of the
/// `protoc-gen-wsgrpc` it finds on PATH.
fn example_template() -> String {
    let template = std::fs::read_to_string(repo_root().join("example/buf.gen.yaml")).unwrap();
    let on_path = "local: protoc-gen-wsgrpc\n";
    assert_eq!(
        template.matches(on_path).count(),
        2,
        "example/buf.gen.yaml should run protoc-gen-wsgrpc twice, for Rust and TypeScript"
    );
    template.replace(
        on_path,
        &format!("local: {:?}\n", env!("CARGO_BIN_EXE_protoc-gen-wsgrpc")),
    )
}

/// What the build.rs path writes for a fixture, laid out as buf writes it.
fn build_rs_output(fixture: &Fixture) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    wsgrpc_gen::configure()
        .out_dir(out.path().join(RUST_OUT))
        .typescript_out_dir(out.path().join(TYPESCRIPT_OUT))
        .compile(fixture.protos, &[repo_root().join(fixture.include)])
        .unwrap();
    read_tree(out.path())
}

fn assert_same_files(
    from_buf: &BTreeMap<String, String>,
    from_build_rs: &BTreeMap<String, String>,
    what: &str,
) {
    assert_eq!(
        from_buf.keys().collect::<Vec<_>>(),
        from_build_rs.keys().collect::<Vec<_>>(),
        "{what}: buf and build.rs write different files"
    );
    for (name, content) in from_build_rs {
        assert!(
            from_buf[name] == *content,
            "{what}: {name} differs between buf and build.rs"
        );
    }
}

#[test]
fn the_example_config_writes_what_build_rs_writes() {
    let out = tempfile::tempdir().unwrap();
    run_buf("example", &example_template(), &[], out.path())
        .unwrap_or_else(|err| panic!("buf generate failed: {err}"));
    let from_buf = read_tree(out.path());
    assert!(from_buf.contains_key(&format!("{RUST_OUT}/example.rs")));
    assert!(from_buf.contains_key(&format!("{TYPESCRIPT_OUT}/example_wsgrpc.ts")));
    assert_same_files(&from_buf, &build_rs_output(&EXAMPLE), "example.proto");
}

/// The fixtures as a command-line input, which replaces the template's:
/// the include directory, and `--path` for each file to generate.
fn run_buf_on(fixture: &Fixture, template: &str, out: &Path) -> Result<(), String> {
    let mut args = vec![fixture.include.to_owned()];
    for proto in fixture.protos {
        args.push("--path".to_owned());
        args.push(format!("{}/{proto}", fixture.include));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_buf(".", template, &args, out)
}

#[test]
fn buf_writes_what_build_rs_writes_for_every_fixture() {
    let template = example_template();
    for fixture in FIXTURES {
        let out = tempfile::tempdir().unwrap();
        run_buf_on(fixture, &template, out.path())
            .unwrap_or_else(|err| panic!("buf generate failed: {err}"));
        assert_same_files(
            &read_tree(out.path()),
            &build_rs_output(fixture),
            fixture.name,
        );
    }
}

#[test]
fn buf_reports_an_unknown_parameter() {
    let template = example_template();
    let rust_only = "opt: rust\n";
    assert!(template.contains(rust_only));
    let template = template.replace(rust_only, "opt: rust,flavour=vanilla\n");
    let out = tempfile::tempdir().unwrap();
    let err = run_buf_on(&EXAMPLE, &template, out.path()).unwrap_err();
    assert!(err.contains("unknown parameter `flavour=vanilla`"), "{err}");
}
