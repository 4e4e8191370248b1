//! The generated TypeScript for the fixtures in `proto/` is checked in under
//! `tests/ts/gen/`, where `tsc` and the TypeScript tests use it. This test
//! regenerates it and fails on any difference; `WSGRPC_BLESS=1` rewrites
//! the checked-in files instead. protoc with the plugin must write the same.

mod common;

use std::collections::BTreeMap;

use common::{EXAMPLE, FIXTURES, Fixture, read_tree, repo_root};

/// Every fixture, generated into one directory sharing one `wsgrpc_runtime.ts`.
const GOLDEN_DIR: &str = "tests/ts/gen";

/// The example's web page imports its client from its own directory.
const EXAMPLE_GOLDEN_DIR: &str = "example/client/src/gen";

/// What the build.rs path writes for every fixture.
fn generate_with_builder(fixtures: &[Fixture]) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    for fixture in fixtures {
        wsgrpc_gen::configure()
            .rust(false)
            .typescript_out_dir(out.path())
            .compile(fixture.protos, &[repo_root().join(fixture.include)])
            .unwrap();
    }
    read_tree(out.path())
}

/// The first line that differs, numbered from 1, with both versions.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (None, None) => return "only in line endings".to_owned(),
            (e, a) => {
                return format!(
                    "line {number}:\n  checked in: {}\n  generated:  {}",
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>")
                );
            }
        }
    }
    unreachable!()
}

#[test]
fn generated_typescript_matches_the_checked_in_files() {
    check_golden(GOLDEN_DIR, FIXTURES);
}

#[test]
fn the_example_page_uses_freshly_generated_typescript() {
    check_golden(EXAMPLE_GOLDEN_DIR, &[EXAMPLE]);
}

/// Compares what `fixtures` generate with the files in `dir`, or rewrites
/// those under `WSGRPC_BLESS=1`.
fn check_golden(dir: &str, fixtures: &[Fixture]) {
    let generated = generate_with_builder(fixtures);
    let golden_dir = repo_root().join(dir);

    if std::env::var_os("WSGRPC_BLESS").is_some_and(|value| value == "1") {
        // Only generated files live there: start afresh, so that files no
        // longer generated go away.
        for name in read_tree(&golden_dir).keys() {
            std::fs::remove_file(golden_dir.join(name)).unwrap();
        }
        for (name, content) in &generated {
            let path = golden_dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        return;
    }

    let golden = read_tree(&golden_dir);
    let mut problems = Vec::new();
    for name in generated.keys().filter(|name| !golden.contains_key(*name)) {
        problems.push(format!("{name}: generated, but not checked in"));
    }
    for name in golden.keys().filter(|name| !generated.contains_key(*name)) {
        problems.push(format!("{name}: checked in, but no longer generated"));
    }
    for (name, content) in &generated {
        if let Some(checked_in) = golden.get(name)
            && checked_in != content
        {
            problems.push(format!(
                "{name} differs, first at {}",
                first_difference(checked_in, content)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the generated TypeScript in {dir} is out of date:\n\n{}\n\n\
         If the change is intended, rewrite the files and review the diff:\n  \
         WSGRPC_BLESS=1 cargo test -p wsgrpc-gen --test typescript_golden",
        problems.join("\n\n")
    );
}

#[test]
fn protoc_with_the_plugin_writes_the_same_typescript() {
    let out = tempfile::tempdir().unwrap();
    for fixture in FIXTURES {
        common::run_protoc(fixture.include, fixture.protos, "typescript", out.path())
            .unwrap_or_else(|err| panic!("protoc failed: {err}"));
    }
    let from_protoc = read_tree(out.path());
    let from_builder = generate_with_builder(FIXTURES);
    assert_eq!(
        from_protoc.keys().collect::<Vec<_>>(),
        from_builder.keys().collect::<Vec<_>>()
    );
    for (name, content) in &from_builder {
        assert!(
            from_protoc[name] == *content,
            "{name} differs between protoc and build.rs: {}",
            first_difference(content, &from_protoc[name])
        );
    }
}
