//! What the output tests share: the repository's layout, the real protoc
//! with the plugin, the real buf with it, and whole output directories
//! read into maps.

#![allow(dead_code, reason = "each test crate uses a part of it")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A set of .proto files to generate from, in one call of each generator.
pub struct Fixture {
    /// Names the fixture in snapshot names and messages.
    pub name: &'static str,
    /// The include directory, relative to the repository root.
    pub include: &'static str,
    /// The files to generate, relative to `include`.
    pub protos: &'static [&'static str],
}

/// The example's service.
pub const EXAMPLE: Fixture = Fixture {
    name: "example",
    include: "proto",
    protos: &["example.proto"],
};

/// The service the integration tests call.
pub const TEST_SERVICE: Fixture = Fixture {
    name: "test_service",
    include: "proto",
    protos: &["wsgrpc/test/v1/test.proto"],
};

/// Every field shape, the well-known types, names that are keywords, and
/// two packages importing each other's types.
pub const RICH: Fixture = Fixture {
    name: "rich",
    include: "proto/fixtures",
    protos: &["rich/shop/v1/shop.proto", "rich/common/v1/common.proto"],
};

/// Every fixture, for the tests that run each generation path on all.
pub const FIXTURES: &[Fixture] = &[EXAMPLE, TEST_SERVICE, RICH];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every file under `dir`, by path relative to it with `/` separators; an
/// absent `dir` reads as empty.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
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

/// Runs the real protoc with this crate's plugin on `protos` (relative to
/// `include`, under the repository root), writing into `out`; protoc's
/// stderr on failure.
pub fn run_protoc(
    include: &str,
    protos: &[&str],
    parameter: &str,
    out: &Path,
) -> Result<(), String> {
    let output = Command::new(protoc())
        .current_dir(repo_root().join(include))
        .arg(format!(
            "--plugin=protoc-gen-wsgrpc={}",
            env!("CARGO_BIN_EXE_protoc-gen-wsgrpc")
        ))
        .arg(format!("--wsgrpc_out={}", out.display()))
        .arg(format!("--wsgrpc_opt={parameter}"))
        .arg("-I.")
        .args(protos)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The buf CLI from the npm packages (`@bufbuild/buf` in the repository's
/// package.json).
fn buf() -> PathBuf {
    let path = repo_root().join("node_modules/.bin/buf");
    let version = Command::new(&path).arg("--version").output();
    assert!(
        version.is_ok_and(|output| output.status.success()),
        "buf not found at {}: run npm ci in the repository root (the test command does)",
        path.display()
    );
    path
}

/// Runs the real `buf generate` in `dir` (relative to the repository root)
/// with the buf.gen.yaml text `template`, under `out` (buf's `--output`,
/// which every plugin's `out` is relative to); `args` follow, such as an
/// input that replaces the template's `inputs`. buf's stderr when it fails
/// or warns.
pub fn run_buf(dir: &str, template: &str, args: &[&str], out: &Path) -> Result<(), String> {
    let scratch = tempfile::tempdir().unwrap();
    let template_path = scratch.path().join("buf.gen.yaml");
    std::fs::write(&template_path, template).unwrap();
    let output = Command::new(buf())
        .current_dir(repo_root().join(dir))
        .arg("generate")
        .arg("--template")
        .arg(&template_path)
        .arg("--output")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    if output.status.success() && output.stderr.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
