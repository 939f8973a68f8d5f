//! Generated blocks in hand-written documents, between marker comments:
//!
//! ```text
//! <!-- bench:w1:start -->
//! ...generated, replaced on every report...
//! <!-- bench:w1:end -->
//! ```
//!
//! Text outside the markers is never touched, and a document whose markers
//! are missing, duplicated, unknown or out of order is an error, never a
//! mangled file.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{BenchError, Result};

const OPEN: &str = "<!-- bench:";
const CLOSE: &str = " -->";

/// One marker found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    name: String,
    start: bool,
    /// Byte range of the whole comment.
    from: usize,
    to: usize,
}

fn scan(text: &str, path: &Path) -> Result<Vec<Marker>> {
    let mut markers = Vec::new();
    let mut offset = 0;
    while let Some(found) = text[offset..].find(OPEN) {
        let from = offset + found;
        let rest = &text[from + OPEN.len()..];
        let Some(end) = rest.find(CLOSE) else {
            return Err(problem(path, format!("unterminated marker at byte {from}")));
        };
        let body = &rest[..end];
        let (name, start) = match body.rsplit_once(':') {
            Some((name, "start")) => (name, true),
            Some((name, "end")) => (name, false),
            _ => {
                return Err(problem(
                    path,
                    format!("marker `<!-- bench:{body} -->` is neither `:start` nor `:end`"),
                ));
            }
        };
        let to = from + OPEN.len() + end + CLOSE.len();
        markers.push(Marker {
            name: name.to_owned(),
            start,
            from,
            to,
        });
        offset = to;
    }
    Ok(markers)
}

fn problem(path: &Path, problem: String) -> BenchError {
    BenchError::Marker {
        path: path.to_owned(),
        problem,
    }
}

/// The names of the blocks in `text`, in order, after checking each is
/// well-formed (one start, then one end, no nesting).
pub fn block_names(text: &str, path: &Path) -> Result<Vec<String>> {
    let markers = scan(text, path)?;
    let mut names: Vec<String> = Vec::new();
    let mut open: Option<&Marker> = None;
    for marker in &markers {
        match (open, marker.start) {
            (None, true) => {
                if names.contains(&marker.name) {
                    return Err(problem(
                        path,
                        format!("block `bench:{}` appears twice", marker.name),
                    ));
                }
                open = Some(marker);
            }
            (None, false) => {
                return Err(problem(
                    path,
                    format!(
                        "`<!-- bench:{}:end -->` without a start marker before it",
                        marker.name
                    ),
                ));
            }
            (Some(current), true) => {
                return Err(problem(
                    path,
                    format!(
                        "`<!-- bench:{}:start -->` inside block `bench:{}`, which has no end marker before it",
                        marker.name, current.name
                    ),
                ));
            }
            (Some(current), false) if current.name != marker.name => {
                return Err(problem(
                    path,
                    format!(
                        "block `bench:{}` ends with `<!-- bench:{}:end -->`",
                        current.name, marker.name
                    ),
                ));
            }
            (Some(current), false) => {
                names.push(current.name.clone());
                open = None;
            }
        }
    }
    if let Some(current) = open {
        return Err(problem(
            path,
            format!("block `bench:{}` has no end marker", current.name),
        ));
    }
    Ok(names)
}

/// `text` with the body of every block replaced by its generated content.
///
/// Every block in `text` must have content in `blocks` (a stale block would
/// lie), and every block of `blocks` marked required must be in `text`.
pub fn rewrite(
    text: &str,
    path: &Path,
    blocks: &BTreeMap<String, String>,
    required: &[&str],
) -> Result<String> {
    let names = block_names(text, path)?;
    for name in &names {
        if !blocks.contains_key(name) {
            return Err(problem(
                path,
                format!(
                    "unknown block `bench:{name}` (known: {})",
                    blocks.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for name in required {
        if !names.iter().any(|found| found == name) {
            return Err(problem(
                path,
                format!(
                    "missing block `bench:{name}`: add `<!-- bench:{name}:start -->` and `<!-- bench:{name}:end -->` where it belongs"
                ),
            ));
        }
    }
    let markers = scan(text, path)?;
    let mut output = String::with_capacity(text.len());
    let mut copied_to = 0;
    for pair in markers.chunks(2) {
        let [start, end] = pair else {
            unreachable!("block_names checked that markers come in pairs");
        };
        output.push_str(&text[copied_to..start.to]);
        output.push('\n');
        let content = &blocks[&start.name];
        output.push_str(content.trim_end_matches('\n'));
        output.push('\n');
        copied_to = end.from;
    }
    output.push_str(&text[copied_to..]);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, body)| ((*name).to_owned(), (*body).to_owned()))
            .collect()
    }

    #[test]
    fn rewrites_only_between_markers_and_is_idempotent() {
        let path = Path::new("doc.md");
        let text = "intro\n<!-- bench:a:start -->\nold\n<!-- bench:a:end -->\nmiddle <!-- bench:b:start --><!-- bench:b:end --> tail\n";
        let new = blocks(&[("a", "A1\nA2\n"), ("b", "B")]);
        let once = rewrite(text, path, &new, &["a", "b"]).unwrap();
        assert_eq!(
            once,
            "intro\n<!-- bench:a:start -->\nA1\nA2\n<!-- bench:a:end -->\nmiddle <!-- bench:b:start -->\nB\n<!-- bench:b:end --> tail\n"
        );
        assert_eq!(rewrite(&once, path, &new, &["a", "b"]).unwrap(), once);
    }

    #[test]
    fn broken_markers_are_errors() {
        let path = Path::new("doc.md");
        let new = blocks(&[("a", "A"), ("b", "B")]);
        let cases = [
            ("<!-- bench:a:start -->", "has no end marker"),
            ("<!-- bench:a:end -->", "without a start marker"),
            (
                "<!-- bench:a:start --><!-- bench:a:end --><!-- bench:a:start --><!-- bench:a:end -->",
                "appears twice",
            ),
            (
                "<!-- bench:a:start --><!-- bench:b:start --><!-- bench:b:end --><!-- bench:a:end -->",
                "inside block `bench:a`",
            ),
            ("<!-- bench:a:start --><!-- bench:b:end -->", "ends with"),
            ("<!-- bench:a:middle -->", "neither"),
            ("<!-- bench:a:start", "unterminated"),
            (
                "<!-- bench:c:start --><!-- bench:c:end -->",
                "unknown block `bench:c`",
            ),
            ("no markers", "missing block `bench:a`"),
        ];
        for (text, expected) in cases {
            let error = rewrite(text, path, &new, &["a"]).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.starts_with("doc.md: "), "{error}");
        }
    }
}
