//! .proto sources for the unit tests, parsed as the build.rs path parses
//! them.

use prost_types::FileDescriptorSet;
use tempfile::TempDir;

/// A temporary include directory holding `sources` (name, text).
pub(crate) fn include_dir(sources: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in sources {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The first of `sources` and every file it imports, with comments.
pub(crate) fn parse(sources: &[(&str, &str)]) -> FileDescriptorSet {
    let dir = include_dir(sources);
    crate::builder::parse(&[sources[0].0], &[dir.path()], true).unwrap()
}
