//! Names that must not clash.

use std::collections::HashSet;

/// `name`, with `suffix` appended until `taken` does not hold it; then
/// taken, so that the next clash is escaped too.
pub(crate) fn unique_name(mut name: String, suffix: char, taken: &mut HashSet<String>) -> String {
    while taken.contains(&name) {
        name.push(suffix);
    }
    taken.insert(name.clone());
    name
}
