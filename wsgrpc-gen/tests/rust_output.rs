//! The generated Rust for the fixtures in `proto/`: golden snapshots, and the
//! same output from the real protoc with the plugin as from the build.rs
//! path.

mod common;

use std::collections::BTreeMap;

use common::{FIXTURES, Fixture, read_tree, repo_root};

/// What the build.rs path writes for a fixture.
fn build_rs_output(fixture: &Fixture) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    let include = repo_root().join(fixture.include);
    wsgrpc_gen::configure()
        .out_dir(out.path())
        .compile(fixture.protos, &[include])
        .unwrap();
    read_tree(out.path())
}

#[test]
fn generated_rust_matches_the_snapshots() {
    for fixture in FIXTURES {
        for (name, content) in build_rs_output(fixture) {
            let snapshot = format!("{}__{}", fixture.name, name.trim_end_matches(".rs"));
            insta::assert_snapshot!(snapshot, content);
        }
    }
}

fn run_protoc(fixture: &Fixture, parameter: &str) -> Result<BTreeMap<String, String>, String> {
    let out = tempfile::tempdir().unwrap();
    common::run_protoc(fixture.include, fixture.protos, parameter, out.path())?;
    Ok(read_tree(out.path()))
}

#[test]
fn protoc_with_the_plugin_writes_what_build_rs_writes() {
    for fixture in FIXTURES {
        let from_protoc = run_protoc(fixture, "rust").unwrap();
        let from_build_rs = build_rs_output(fixture);
        assert_eq!(
            from_protoc.keys().collect::<Vec<_>>(),
            from_build_rs.keys().collect::<Vec<_>>(),
            "fixture {}",
            fixture.name
        );
        for (name, content) in &from_build_rs {
            assert!(
                from_protoc[name] == *content,
                "fixture {}: {name} differs between protoc and build.rs",
                fixture.name
            );
        }
    }
}

#[test]
fn protoc_reports_an_unknown_parameter() {
    let err = run_protoc(&common::EXAMPLE, "rust,flavour=vanilla").unwrap_err();
    assert!(err.contains("unknown parameter `flavour=vanilla`"), "{err}");
}
