//! TSDoc blocks.

use crate::model::Comments;

/// A TSDoc block: the comments, then `extra` paragraphs, then the proto
/// declaration, each line indented by `indent`.
pub(super) fn doc_block(
    comments: &Comments,
    extra: &[String],
    declaration: &str,
    indent: &str,
) -> String {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let lines = comments.lines();
    if !lines.is_empty() {
        paragraphs.push(lines.iter().map(|line| (*line).to_owned()).collect());
    }
    paragraphs.extend(extra.iter().map(|text| vec![text.clone()]));
    paragraphs.push(vec![format!("@generated from {declaration}")]);

    let mut out = format!("{indent}/**\n");
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push_str(indent);
            out.push_str(" *\n");
        }
        for line in paragraph {
            // A comment must not close the block it is in.
            let line = line.replace("*/", "*\\/");
            let line = line.trim_end();
            out.push_str(indent);
            out.push_str(" *");
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out.push_str(indent);
    out.push_str(" */");
    out
}
