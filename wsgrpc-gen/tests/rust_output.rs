//! The generated Rust for the fixtures in `proto/`: golden snapshots, and the
//! same output from the real protoc with the plugin as from the build.rs
//! path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One set of .proto files to generate from.
struct Fixture {
    name: &'static str,
    include: &'static str,
    protos: &'static [&'static str],
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "example",
        include: "proto",
        protos: &["example.proto"],
    },
    Fixture {
        name: "test_service",
        include: "proto",
        protos: &["wsgrpc/test/v1/test.proto"],
    },
    Fixture {
        name: "rich",
        include: "proto/fixtures",
        protos: &["rich/shop/v1/shop.proto", "rich/common/v1/common.proto"],
    },
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every file in `dir`, by name relative to it.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

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

/// The protoc Debian ships; the test command installs it.
fn protoc() -> PathBuf {
    let path = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| "protoc".into());
    let version = Command::new(&path).arg("--version").output();
    assert!(
        version.is_ok_and(|output| output.status.success()),
        "protoc not found: install protobuf-compiler (the test command does) or set PROTOC"
    );
    path
}

fn run_protoc(fixture: &Fixture, parameter: &str) -> Result<BTreeMap<String, String>, String> {
    let out = tempfile::tempdir().unwrap();
    let plugin = env!("CARGO_BIN_EXE_protoc-gen-wsgrpc");
    let output = Command::new(protoc())
        .current_dir(repo_root().join(fixture.include))
        .arg(format!("--plugin=protoc-gen-wsgrpc={plugin}"))
        .arg(format!("--wsgrpc_out={}", out.path().display()))
        .arg(format!("--wsgrpc_opt={parameter}"))
        .arg("-I.")
        .args(fixture.protos)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
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
    let err = run_protoc(&FIXTURES[0], "rust,flavour=vanilla").unwrap_err();
    assert!(err.contains("unknown parameter `flavour=vanilla`"), "{err}");
}
