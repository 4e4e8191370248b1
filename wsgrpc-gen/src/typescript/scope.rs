//! One output file's scope: the names it declares, and the types it
//! imports from other files and from the runtime.

use std::collections::{BTreeMap, HashSet};

use super::names::{RUNTIME_NAMESPACE, Symbols, claim};
use super::types::well_known_type;
use super::views::ImportView;
use super::{RUNTIME_FILE, output_name};
use crate::model::File;
use crate::{Error, Options};

/// The names one output file declares and imports, and what it imports.
pub(super) struct Scope<'s, 'a> {
    file: &'a File,
    pub(super) symbols: &'s Symbols<'a>,
    options: &'s Options,
    /// Every top-level name in the file, imports included.
    pub(super) taken: HashSet<String>,
    /// Imported types: file → exported name → local name.
    imports: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the file refers to the runtime's types.
    pub(super) uses_runtime: bool,
}

impl<'s, 'a> Scope<'s, 'a> {
    /// The scope of `file`, holding the names of the types it declares.
    pub(super) fn new(file: &'a File, symbols: &'s Symbols<'a>, options: &'s Options) -> Self {
        let declared = file
            .messages
            .iter()
            .filter(|m| !m.is_map_entry)
            .map(|m| &m.full_name)
            .chain(file.enums.iter().map(|e| &e.full_name));
        let taken = declared
            .map(|full_name| symbols.get(full_name).expect("declared").name.clone())
            .collect();
        Self {
            file,
            symbols,
            options,
            taken,
            imports: BTreeMap::new(),
            uses_runtime: false,
        }
    }

    /// The .proto file this is the scope of.
    pub(super) fn file_name(&self) -> &str {
        &self.file.name
    }

    /// The exported name of a message or enum this file declares.
    pub(super) fn declared_name(&self, full_name: &str) -> String {
        self.symbols.get(full_name).expect("declared").name.clone()
    }

    /// The TypeScript type that a message or enum is referred to by here,
    /// importing it when it is declared elsewhere.
    pub(super) fn reference(&mut self, full_name: &str) -> Result<String, Error> {
        if full_name.starts_with("google.protobuf.") {
            let ts = well_known_type(full_name).expect("a google.protobuf type");
            self.uses_runtime |= ts.contains("wsgrpc.");
            return Ok(ts.to_owned());
        }
        let symbol = self
            .symbols
            .get(full_name)
            .ok_or_else(|| Error::UnknownType {
                file: self.file.name.clone(),
                type_name: full_name.to_owned(),
            })?;
        if std::ptr::eq(symbol.file, self.file) {
            return Ok(symbol.name.clone());
        }
        let path = self.import_path(&output_name(&symbol.file.name));
        if let Some(local) = self
            .imports
            .get(&path)
            .and_then(|names| names.get(&symbol.name))
        {
            return Ok(local.clone());
        }
        let local = if self.taken.contains(&symbol.name) {
            let prefix = symbol.file.package.replace('.', "_");
            let qualified = if prefix.is_empty() {
                symbol.name.clone()
            } else {
                format!("{prefix}_{}", symbol.name)
            };
            claim(qualified, &mut self.taken)
        } else {
            claim(symbol.name.clone(), &mut self.taken)
        };
        self.imports
            .entry(path)
            .or_default()
            .insert(symbol.name.clone(), local.clone());
        Ok(local)
    }

    /// The relative import path of `target` (an output file name) from this
    /// file's output.
    fn import_path(&self, target: &str) -> String {
        let from = output_name(&self.file.name);
        let from_dirs: Vec<&str> = from.split('/').collect();
        let from_dirs = &from_dirs[..from_dirs.len() - 1];
        let target_parts: Vec<&str> = target.split('/').collect();
        let common = from_dirs
            .iter()
            .zip(&target_parts[..target_parts.len() - 1])
            .take_while(|(a, b)| a == b)
            .count();
        let mut path = if common == from_dirs.len() {
            "./".to_owned()
        } else {
            "../".repeat(from_dirs.len() - common)
        };
        path.push_str(&target_parts[common..].join("/"));
        let stem = path.strip_suffix(".ts").unwrap_or(&path);
        format!("{stem}{}", self.options.import_extension())
    }

    /// The `import` of the runtime: of its values where the file has a
    /// client (which needs the runtime at run time), of its types where
    /// only they are used, none otherwise.
    pub(super) fn runtime_import(&self) -> Option<String> {
        let path = match self.options.runtime_package() {
            Some(package) => package.to_owned(),
            None => self.import_path(RUNTIME_FILE),
        };
        if !self.file.services.is_empty() {
            Some(format!("import * as {RUNTIME_NAMESPACE} from \"{path}\";"))
        } else if self.uses_runtime {
            Some(format!(
                "import type * as {RUNTIME_NAMESPACE} from \"{path}\";"
            ))
        } else {
            None
        }
    }

    /// The types imported from other files, one `import` a file.
    pub(super) fn imports(&self) -> Vec<ImportView> {
        self.imports
            .iter()
            .map(|(path, names)| ImportView {
                path: path.clone(),
                names: names
                    .iter()
                    .map(|(exported, local)| {
                        if exported == local {
                            exported.clone()
                        } else {
                            format!("{exported} as {local}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect()
    }
}
