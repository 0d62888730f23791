//! Where in a profile's text a validation error's path points, so that an
//! editor can show the error at its line.

/// One path segment: `workflow`, `[2]`.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// The 1-based line of `path` (`workflow.preparing[2].source.url`) in the
/// YAML `text`, or the nearest line found on the way; `None` when not even
/// its first key is found. A path of the whole document may name its line
/// in `message` ("... at line 4 ..."), which is used instead.
pub fn line_of(text: &str, path: &str, message: &str) -> Option<usize> {
    if let Some(n) = message
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
    {
        return Some(n);
    }
    // (number, indent, content) of each line that holds something.
    let lines: Vec<(usize, usize, &str)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let content = l.trim_start();
            (!content.is_empty() && !content.starts_with('#'))
                .then(|| (i + 1, l.len() - content.len(), content))
        })
        .collect();
    // The block being searched: lines[from..], deeper than `parent`; after
    // an index, the item's own line (`- key: ...`) belongs to it too.
    let mut from = 0;
    let mut parent: Option<usize> = None;
    let mut in_item = false;
    let mut found = None;
    for segment in segments(path) {
        let mut block = lines[from..]
            .iter()
            .enumerate()
            .take_while(|(i, (_, indent, _))| {
                (in_item && *i == 0) || parent.is_none_or(|p| *indent > p)
            });
        let hit = match segment {
            Segment::Key(key) => block
                .find(|(_, (_, _, content))| {
                    let content = content.trim_start_matches("- ");
                    content
                        .strip_prefix(key)
                        .or_else(|| content.strip_prefix(&format!("\"{key}\"")))
                        .is_some_and(|rest| rest.starts_with(':'))
                })
                .map(|(i, (_, indent, content))| {
                    // A key on a list item's line sits two columns in.
                    let extra = if content.starts_with("- ") { 2 } else { 0 };
                    (i, indent + extra)
                }),
            Segment::Index(n) => {
                let mut items = block.filter(|(_, (_, _, c))| c.starts_with('-'));
                let first = items.next();
                let item_indent = first.map(|(_, (_, indent, _))| *indent);
                first
                    .into_iter()
                    .chain(items.filter(|(_, (_, indent, _))| Some(*indent) == item_indent))
                    .nth(n)
                    .map(|(i, (_, indent, _))| (i, *indent))
            }
        };
        let Some((i, indent)) = hit else { break };
        found = Some(lines[from + i].0);
        in_item = matches!(segment, Segment::Index(_));
        from += if in_item { i } else { i + 1 };
        parent = Some(indent);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: v1alpha1
kind: profile
name: demo
# a comment
workflow:
  preparing:
    - action: echo
      message: one
    - action: serve_file
      source:
        url: http://x/y
  installing:
    - action: wait
";

    #[test]
    fn paths_are_found_at_their_lines() {
        for (path, line) in [
            ("name", Some(3)),
            ("workflow", Some(5)),
            ("workflow.preparing", Some(6)),
            ("workflow.preparing[0]", Some(7)),
            ("workflow.preparing[0].message", Some(8)),
            ("workflow.preparing[1].action", Some(9)),
            ("workflow.preparing[1].source.url", Some(11)),
            ("workflow.installing[0].action", Some(13)),
            ("workflow.nothing", Some(5)),
            ("absent", None),
        ] {
            assert_eq!(line_of(DOC, path, ""), line, "{path}");
        }
        assert_eq!(
            line_of(
                DOC,
                "(document)",
                "did not find expected key at line 4 column 2"
            ),
            Some(4)
        );
    }
}
