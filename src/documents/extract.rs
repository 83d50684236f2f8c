//! Text out of files: each format becomes a list of [`Section`]s (page, heading path,
//! text) that the chunker cuts up. Runs inside `appliance worker extract`, a process
//! with memory and CPU limits, because parsers of hostile files (zip bombs, broken
//! PDFs) are where memory and time blow up.
//!
//! Crates: `lopdf` (PDF text per page, with a decompression limit), `zip` + `quick-xml`
//! (DOCX: paragraphs, headings by style, a cap on inflated bytes), `calamine` (XLSX
//! sheets), `csv`, `scraper` (HTML through html5ever, a browser-grade parser).

use std::io::Read;

use super::MediaType;

/// A run of text with one position: a page of a PDF, the part of a document under one
/// heading, a sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// 1-based page, when the format has pages.
    pub page: Option<u32>,
    /// Headings above this text, outermost first.
    pub headings: Vec<String>,
    /// The text; paragraphs separated by blank lines.
    pub text: String,
}

/// The most bytes a compressed part (a DOCX body, a PDF stream) may inflate to.
pub const MAX_INFLATED: u64 = 256 * 1024 * 1024;

/// Why a file could not be read. The message is shown to the document's owner.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExtractError(pub String);

fn fail(message: impl Into<String>) -> ExtractError {
    ExtractError(message.into())
}

/// Extracts the sections of `bytes`, read as `media`.
pub fn extract(media: MediaType, bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let sections = match media {
        MediaType::Text => vec![Section {
            page: None,
            headings: Vec::new(),
            text: utf8(bytes)?.to_string(),
        }],
        MediaType::Markdown => markdown(utf8(bytes)?),
        MediaType::Html => html(utf8(bytes)?),
        MediaType::Pdf => pdf(bytes)?,
        MediaType::Docx => docx(bytes)?,
        MediaType::Xlsx => xlsx(bytes)?,
        MediaType::Csv => vec![Section {
            page: None,
            headings: Vec::new(),
            text: csv_records(bytes)?,
        }],
        MediaType::Json => vec![Section {
            page: None,
            headings: Vec::new(),
            text: json_lines(bytes)?,
        }],
    };
    if sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(fail(match media {
            MediaType::Pdf => {
                "the PDF has no extractable text (a scanned document? OCR is not supported)"
            }
            _ => "the file contains no text",
        }));
    }
    Ok(sections)
}

fn utf8(bytes: &[u8]) -> Result<&str, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "the file is not valid UTF-8 text (invalid bytes at offset {}); save it as UTF-8",
            e.valid_up_to()
        ))
    })
}

/// Sections under a heading path, built as a document is read: text accumulates under
/// the current headings until the next heading starts a new section.
#[derive(Default)]
struct Outline {
    sections: Vec<Section>,
    headings: Vec<(usize, String)>,
    text: String,
}

impl Outline {
    /// Ends the current section (if it has text) and opens one under `title` at `level`.
    fn heading(&mut self, level: usize, title: String) {
        self.flush();
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, title));
    }

    fn flush(&mut self) {
        if !self.text.trim().is_empty() {
            self.sections.push(Section {
                page: None,
                headings: self.headings.iter().map(|(_, h)| h.clone()).collect(),
                text: std::mem::take(&mut self.text),
            });
        }
        self.text.clear();
    }

    fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}

/// Markdown: ATX headings (`#`…) build the heading path; the text is kept as written.
fn markdown(text: &str) -> Vec<Section> {
    let mut outline = Outline::default();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if !in_code && (1..=6).contains(&level) && line[level..].starts_with(' ') {
            let title = line[level..]
                .trim()
                .trim_end_matches('#')
                .trim()
                .to_string();
            outline.heading(level, title);
            continue;
        }
        outline.text.push_str(line);
        outline.text.push('\n');
    }
    outline.finish()
}

/// HTML: visible text only (no scripts, styles, templates), headings kept as the path,
/// block elements as paragraph breaks.
fn html(source: &str) -> Vec<Section> {
    use scraper::{Html, Node};
    let document = Html::parse_document(source);
    let mut outline = Outline::default();

    fn text_of(node: ego_tree::NodeRef<'_, Node>) -> String {
        let mut out = String::new();
        for d in node.descendants() {
            if let Node::Text(t) = d.value() {
                out.push_str(t);
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    // Depth-first walk with an explicit stack (deeply nested hostile HTML must not
    // overflow the call stack).
    let mut stack = vec![(document.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Element(element) => {
                let name = element.name();
                if closing {
                    if is_block(name) && !outline.text.ends_with("\n\n") {
                        outline.text.push_str("\n\n");
                    }
                    continue;
                }
                if matches!(
                    name,
                    "script"
                        | "style"
                        | "noscript"
                        | "template"
                        | "head"
                        | "svg"
                        | "iframe"
                        | "object"
                ) {
                    continue;
                }
                if let Some(level) = name
                    .strip_prefix('h')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|l| (1..=6).contains(l))
                {
                    let title = text_of(node);
                    if !title.is_empty() {
                        outline.heading(level, title);
                    }
                    continue;
                }
                if name == "br" {
                    outline.text.push('\n');
                }
                stack.push((node, true));
                for child in node.children().rev() {
                    stack.push((child, false));
                }
            }
            Node::Text(text) => {
                let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !words.is_empty() {
                    let current = &mut outline.text;
                    if !current.is_empty() && !current.ends_with(['\n', ' ']) {
                        current.push(' ');
                    }
                    current.push_str(&words);
                }
            }
            Node::Document | Node::Fragment => {
                for child in node.children().rev() {
                    stack.push((child, false));
                }
            }
            _ => {}
        }
    }
    outline.finish()
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "li"
            | "ul"
            | "ol"
            | "table"
            | "tr"
            | "section"
            | "article"
            | "blockquote"
            | "pre"
            | "dd"
            | "dt"
            | "dl"
            | "header"
            | "footer"
            | "main"
            | "nav"
            | "aside"
            | "figure"
            | "figcaption"
            | "form"
            | "hr"
            | "body"
    )
}

/// The page title of an HTML document, if it has one (a web page's document name).
pub fn html_title(source: &str) -> Option<String> {
    let document = scraper::Html::parse_document(source);
    let selector = scraper::Selector::parse("title").ok()?;
    let title = document
        .select(&selector)
        .next()?
        .text()
        .collect::<String>();
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then(|| title.chars().take(200).collect())
}

/// PDF: the text of every page, as one section per page.
fn pdf(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let doc = lopdf::Document::load_mem(bytes)
        .map_err(|_| fail("the PDF is damaged or not a PDF (it could not be parsed)"))?;
    if doc.is_encrypted() {
        return Err(fail(
            "the PDF is encrypted (password-protected); save an unprotected copy and add that",
        ));
    }
    let mut sections = Vec::new();
    for (number, _) in doc.get_pages() {
        let text = doc
            .extract_text_with_limit(&[number], MAX_INFLATED as usize)
            .map_err(|_| fail(format!("the text of page {number} could not be read")))?;
        sections.push(Section {
            page: Some(number),
            headings: Vec::new(),
            text,
        });
    }
    if sections.is_empty() {
        return Err(fail("the PDF has no pages"));
    }
    Ok(sections)
}

/// Reads one member of a zip archive, refusing to inflate more than [`MAX_INFLATED`].
fn zip_member(bytes: &[u8], name: &str, what: &str) -> Result<String, ExtractError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| {
        fail(format!(
            "the {what} file is damaged (not a readable zip archive)"
        ))
    })?;
    let member = archive.by_name(name).map_err(|_| {
        fail(format!(
            "the {what} file has no {name}; is it really a {what}?"
        ))
    })?;
    let mut out = Vec::new();
    member
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|_| {
            fail(format!(
                "the {what} file is damaged (its contents do not inflate)"
            ))
        })?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(fail(format!(
            "the {what} file inflates to more than {} MiB of text (a zip bomb?)",
            MAX_INFLATED >> 20
        )));
    }
    String::from_utf8(out).map_err(|_| fail(format!("the {what} file's XML is not UTF-8")))
}

/// DOCX: paragraphs of `word/document.xml`; `Heading N` / `Title` styles become the
/// heading path.
fn docx(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    use quick_xml::events::Event;
    let xml = zip_member(bytes, "word/document.xml", "DOCX")?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut outline = Outline::default();
    let mut paragraph = String::new();
    let mut heading_level: Option<usize> = None;
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                "p" => {
                    paragraph.clear();
                    heading_level = None;
                }
                "t" => in_text = true,
                "tab" => paragraph.push('\t'),
                "br" => paragraph.push('\n'),
                "pStyle" => {
                    for attr in e.attributes().flatten() {
                        if attr.key.local_name().as_ref() == "val" {
                            let style = attr.value.to_ascii_lowercase();
                            heading_level = if style == "title" {
                                Some(1)
                            } else {
                                style
                                    .strip_prefix("heading")
                                    .and_then(|n| n.trim().parse::<usize>().ok())
                                    .filter(|l| (1..=9).contains(l))
                            };
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                paragraph.push_str(&t.xml10_content());
            }
            Ok(Event::GeneralRef(r)) if in_text => {
                let name = r.into_inner();
                let numeric = numeric_ref(&name);
                paragraph.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => numeric.as_deref().unwrap_or(""),
                });
            }
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = paragraph.trim().to_string();
                    match heading_level {
                        Some(level) if !text.is_empty() => outline.heading(level, text),
                        _ if !text.is_empty() => {
                            outline.text.push_str(&text);
                            outline.text.push_str("\n\n");
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Err(_) => return Err(fail("the DOCX file's XML is damaged")),
            _ => {}
        }
    }
    Ok(outline.finish())
}

/// The character of a numeric reference body (`#65`, `#x41`), if valid.
fn numeric_ref(name: &str) -> Option<String> {
    let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => name.strip_prefix('#')?.parse().ok()?,
    };
    char::from_u32(code).map(String::from)
}

/// XLSX: one section per sheet; each row a record "Header: value; …" under the sheet's
/// first row.
fn xlsx(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    use calamine::{Reader, Xlsx};
    let mut workbook: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes))
        .map_err(|_| fail("the XLSX file is damaged or not a spreadsheet"))?;
    let mut sections = Vec::new();
    for name in workbook.sheet_names() {
        let range = workbook
            .worksheet_range(&name)
            .map_err(|_| fail(format!("sheet `{name}` could not be read")))?;
        let rows: Vec<Vec<String>> = range
            .rows()
            .map(|row| row.iter().map(|cell| cell.to_string()).collect())
            .collect();
        sections.push(Section {
            page: None,
            headings: vec![name.clone()],
            text: records(rows),
        });
    }
    Ok(sections)
}

/// CSV: records under the header row.
fn csv_records(bytes: &[u8]) -> Result<String, ExtractError> {
    utf8(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record =
            record.map_err(|_| fail(format!("row {} of the CSV file is malformed", i + 1)))?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok(records(rows))
}

/// Rows → one paragraph per row, "Header: value; …" (empty cells left out).
fn records(rows: Vec<Vec<String>>) -> String {
    let mut rows = rows
        .into_iter()
        .filter(|r| r.iter().any(|c| !c.trim().is_empty()));
    let Some(header) = rows.next() else {
        return String::new();
    };
    let mut out = String::new();
    for row in rows {
        let fields: Vec<String> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(
                |(i, v)| match header.get(i).map(|h| h.trim()).filter(|h| !h.is_empty()) {
                    Some(h) => format!("{h}: {}", v.trim()),
                    None => v.trim().to_string(),
                },
            )
            .collect();
        out.push_str(&fields.join("; "));
        out.push_str("\n\n");
    }
    out
}

/// JSON: one line per scalar, "path.to.key: value", so that each fact carries its
/// context.
fn json_lines(bytes: &[u8]) -> Result<String, ExtractError> {
    let text = utf8(bytes)?;
    // serde_json limits nesting to 128 levels, so hostile depth is an error, not a crash.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| fail(format!("the JSON file is malformed: {e}")))?;
    let mut out = String::new();
    let mut stack = vec![(String::new(), &value)];
    while let Some((path, value)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter().rev() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    stack.push((p, v));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), v));
                }
            }
            scalar => {
                let shown = match scalar {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push_str(&format!("{path}: {shown}\n"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_become_the_path() {
        let s =
            markdown("intro\n# A\ntext a\n## B\ntext b\n# C\ntext c\n```\n# not a heading\n```\n");
        let paths: Vec<_> = s.iter().map(|s| s.headings.join(" > ")).collect();
        assert_eq!(paths, ["", "A", "A > B", "C"]);
        assert!(s[3].text.contains("# not a heading"));
    }

    #[test]
    fn html_drops_scripts_and_keeps_headings() {
        let s = html(
            "<html><head><title>T</title><style>p{}</style></head><body><h1>Top</h1><p>one <b>two</b></p>\
             <script>alert('x')</script><h2>Sub</h2><p>three</p></body></html>",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].headings, ["Top"]);
        assert!(s[0].text.contains("one two"));
        assert_eq!(s[1].headings, ["Top", "Sub"]);
        assert!(!s.iter().any(|x| x.text.contains("alert")));
        assert_eq!(
            html_title("<title> My  page </title>").as_deref(),
            Some("My page")
        );
    }

    #[test]
    fn deeply_nested_html_does_not_overflow_the_stack() {
        let deep = "<div>".repeat(5_000) + "deep text";
        let s = html(&deep);
        assert!(s.iter().any(|x| x.text.contains("deep text")));
    }

    #[test]
    fn csv_rows_become_records_with_their_header() {
        let text = csv_records(b"name,city\nAda,London\nAlan,,\n").unwrap();
        assert_eq!(text, "name: Ada; city: London\n\nname: Alan\n\n");
    }

    #[test]
    fn json_facts_keep_their_path() {
        let text = json_lines(br#"{"a":{"b":[1,"x"]},"c":true}"#).unwrap();
        assert_eq!(text, "a.b[0]: 1\na.b[1]: x\nc: true\n");
    }

    #[test]
    fn invalid_utf8_and_broken_files_fail_with_a_reason() {
        let e = extract(MediaType::Text, b"ok\xff\xfe").unwrap_err();
        assert!(e.0.contains("not valid UTF-8"), "{e}");
        let e = extract(MediaType::Pdf, b"%PDF-1.4 garbage").unwrap_err();
        assert!(e.0.contains("damaged"), "{e}");
        let e = extract(MediaType::Docx, b"PK\x03\x04 nope").unwrap_err();
        assert!(e.0.contains("DOCX"), "{e}");
        let e = extract(MediaType::Json, &[b'['; 10_000]).unwrap_err();
        assert!(e.0.contains("malformed"), "{e}");
    }
}
