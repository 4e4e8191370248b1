//! The binary, given bad input: each is one clear line on stderr and a
//! failed exit, never a panic.

use std::path::Path;
use std::process::{Command, Output};

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

fn bridge(args: &[&str]) -> Output {
    // Any free port: the errors must not depend on what else listens.
    Command::new(env!("CARGO_BIN_EXE_wsgrpc-bridge"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

/// Its error message, after checking that it failed cleanly.
fn failure(args: &[&str]) -> String {
    let output = bridge(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(
        output.status.code().is_some(),
        "killed by a signal: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn write_set(path: &Path, files: Vec<FileDescriptorProto>) {
    std::fs::write(path, FileDescriptorSet { file: files }.encode_to_vec()).unwrap();
}

const BACKEND: &str = "http://127.0.0.1:1";

#[test]
fn a_missing_descriptor_file() {
    let err = failure(&[
        "--backend",
        BACKEND,
        "--descriptor-set",
        "/nowhere/api.binpb",
    ]);
    assert!(
        err.contains("cannot read descriptor set /nowhere/api.binpb"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_descriptor_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.binpb");
    std::fs::write(&path, [0xff, 0xff, 0xff, 0x0f, 0x00]).unwrap();
    let err = failure(&[
        "--backend",
        BACKEND,
        "--descriptor-set",
        path.to_str().unwrap(),
    ]);
    assert!(err.contains("is not a FileDescriptorSet"), "{err}");
    assert!(err.contains("--include_imports"), "{err}");
}

#[test]
fn a_set_without_an_import_or_without_services() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.binpb");
    let file = FileDescriptorProto {
        name: Some("api.proto".into()),
        package: Some("api".into()),
        dependency: vec!["acme/money.proto".into()],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    write_set(&path, vec![file.clone()]);
    let err = failure(&[
        "--backend",
        BACKEND,
        "--descriptor-set",
        path.to_str().unwrap(),
    ]);
    assert!(
        err.contains("`acme/money.proto` (imported by `api.proto`)"),
        "{err}"
    );

    write_set(
        &path,
        vec![FileDescriptorProto {
            dependency: Vec::new(),
            ..file
        }],
    );
    let err = failure(&[
        "--backend",
        BACKEND,
        "--descriptor-set",
        path.to_str().unwrap(),
    ]);
    assert!(err.contains("define no services"), "{err}");
}

#[test]
fn an_unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "backend = \"http://127.0.0.1:1\"\nmax_conections = 5\n",
    )
    .unwrap();
    let err = failure(&["--config", path.to_str().unwrap()]);
    assert!(err.contains("unknown field `max_conections`"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(
        err.contains("max_connections"),
        "the known keys are listed: {err}"
    );
}

#[test]
fn missing_settings_are_named() {
    let err = failure(&["--reflection"]);
    assert!(err.contains("no backend"), "{err}");
    let err = failure(&["--backend", BACKEND]);
    assert!(
        err.contains("--descriptor-set FILE` or `--reflection"),
        "{err}"
    );
    let err = failure(&["--backend", "not a uri", "--reflection"]);
    assert!(err.contains("backend `not a uri`"), "{err}");
    let err = failure(&[
        "--backend",
        BACKEND,
        "--reflection",
        "--idle-timeout",
        "soon",
    ]);
    assert!(err.contains("`soon` is not a duration"), "{err}");
}

#[test]
fn help_explains_every_option() {
    let output = bridge(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--backend",
        "--descriptor-set",
        "--reflection",
        "--reload-interval",
        "--service",
        "--allowed-origin",
        "--max-calls-per-connection",
        "--protocol-v2",
        "--token-file",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
