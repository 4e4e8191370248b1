//! The TypeScript output: `{name}_wsgrpc.ts` per .proto file and the
//! transport `wsgrpc_runtime.ts`.

use crate::model::File;
use crate::{Error, GeneratedFile};

/// How the TypeScript is written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Extension of relative imports: `.js` (default) or empty.
    pub import_extension: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            import_extension: ".js".to_owned(),
        }
    }
}

pub(crate) fn render(
    _files: &[File],
    _to_generate: &[String],
    _options: &Options,
) -> Result<Vec<GeneratedFile>, Error> {
    Ok(Vec::new())
}
