//! Cutting extracted text into chunks for embedding and citation.
//!
//! Chunks are measured in tokens of the embedding model, never cross a section (a page,
//! a heading), prefer paragraph boundaries, and overlap by up to `overlap` tokens of
//! whole paragraphs (or of tokens, inside one long paragraph). Each chunk keeps its page,
//! heading path and character offsets in the document's extracted text (sections joined
//! by a blank line), which is what a citation points at.

use super::extract::Section;

/// Paragraphs longer than this many bytes are cut (at whitespace where possible) before
/// tokenising, so that a 200 MB single line costs bounded memory.
const MAX_PIECE_BYTES: usize = 4096;
/// Headings longer than this are shortened in the path.
const MAX_HEADING_CHARS: usize = 120;

/// Something that turns text into tokens with byte offsets (the embedding model's
/// tokenizer; a whitespace splitter in tests).
pub trait Tokens {
    /// Byte ranges of the tokens of `text`.
    fn offsets(&self, text: &str) -> Vec<(usize, usize)>;
}

impl Tokens for tokenizers::Tokenizer {
    fn offsets(&self, text: &str) -> Vec<(usize, usize)> {
        match self.encode(text, false) {
            Ok(encoding) => encoding.get_offsets().to_vec(),
            // Tokenizing plain text does not fail in practice; count by words if it does.
            Err(_) => words(text),
        }
    }
}

fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// A chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TextChunk {
    /// The text.
    pub text: String,
    /// 1-based page.
    pub page: Option<u32>,
    /// Heading path, outermost first, joined by " > ".
    pub heading: String,
    /// Character offsets in the document's extracted text.
    pub char_start: u64,
    /// End (exclusive).
    pub char_end: u64,
    /// Tokens.
    pub tokens: u32,
}

/// A paragraph (or piece of one): its tokens' byte ranges in the section.
struct Piece {
    tokens: Vec<(usize, usize)>,
}

/// Cuts `sections` into chunks of at most `max_tokens` tokens overlapping by up to
/// `overlap` tokens.
pub fn chunk(
    sections: &[Section],
    tokenizer: &dyn Tokens,
    max_tokens: usize,
    overlap: usize,
) -> Vec<TextChunk> {
    let max_tokens = max_tokens.max(8);
    let overlap = overlap.min(max_tokens / 2);
    let mut out = Vec::new();
    let mut base_chars = 0u64;
    for section in sections {
        let text = section.text.as_str();
        let heading = section
            .headings
            .iter()
            .map(|h| h.chars().take(MAX_HEADING_CHARS).collect::<String>())
            .collect::<Vec<_>>()
            .join(" > ");
        let pieces: Vec<Piece> = paragraphs(text)
            .into_iter()
            .map(|(start, end)| Piece {
                tokens: tokenizer
                    .offsets(&text[start..end])
                    .into_iter()
                    // Padding and special tokens have empty spans: not text.
                    .filter(|(a, b)| b > a)
                    .map(|(a, b)| (a + start, b + start))
                    .collect(),
            })
            // Fewer than one token per 64 bytes is not language (a base64 blob, a
            // 100 MB run of one character): the tokenizer makes it one unknown token.
            .filter(|p| {
                let bytes =
                    p.tokens.last().map_or(0, |t| t.1) - p.tokens.first().map_or(0, |t| t.0);
                !p.tokens.is_empty() && p.tokens.len() * 64 >= bytes.min(MAX_PIECE_BYTES)
            })
            .collect();
        let mut ranges = Vec::new(); // (byte start, byte end, tokens)
        let mut current: Vec<&Piece> = Vec::new();
        let mut current_tokens = 0;
        for piece in &pieces {
            let n = piece.tokens.len();
            if n > max_tokens {
                if !current.is_empty() {
                    ranges.push(span(&current, current_tokens));
                    current.clear();
                    current_tokens = 0;
                }
                // One long paragraph: windows of tokens with a token overlap.
                let step = max_tokens - overlap;
                let mut first = 0;
                while first < n {
                    let last = (first + max_tokens).min(n);
                    ranges.push((
                        piece.tokens[first].0,
                        piece.tokens[last - 1].1,
                        last - first,
                    ));
                    if last == n {
                        break;
                    }
                    first += step;
                }
                continue;
            }
            if current_tokens + n > max_tokens && !current.is_empty() {
                ranges.push(span(&current, current_tokens));
                // Carry whole trailing paragraphs that fit the overlap.
                let mut kept = Vec::new();
                let mut kept_tokens = 0;
                for p in current.iter().rev() {
                    if kept_tokens + p.tokens.len() > overlap
                        || kept_tokens + p.tokens.len() + n > max_tokens
                    {
                        break;
                    }
                    kept_tokens += p.tokens.len();
                    kept.insert(0, *p);
                }
                current = kept;
                current_tokens = kept_tokens;
            }
            current.push(piece);
            current_tokens += n;
        }
        if !current.is_empty() {
            ranges.push(span(&current, current_tokens));
        }
        let chars = CharIndex::new(text);
        for (start, end, tokens) in ranges {
            out.push(TextChunk {
                text: text[start..end].to_string(),
                page: section.page,
                heading: heading.clone(),
                char_start: base_chars + chars.at(start),
                char_end: base_chars + chars.at(end),
                tokens: tokens as u32,
            });
        }
        base_chars += chars.total + 2; // sections are joined by "\n\n"
    }
    out
}

fn span(pieces: &[&Piece], tokens: usize) -> (usize, usize, usize) {
    let start = pieces.first().map_or(0, |p| p.tokens[0].0);
    let end = pieces.last().map_or(0, |p| p.tokens[p.tokens.len() - 1].1);
    (start, end, tokens)
}

/// Byte ranges of paragraphs (separated by blank lines), long ones cut into pieces of
/// at most [`MAX_PIECE_BYTES`] at whitespace (or at a character boundary).
fn paragraphs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t' || bytes[j] == b'\r') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'\n' {
                push_pieces(text, start, i, &mut out);
                start = j + 1;
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    push_pieces(text, start, text.len(), &mut out);
    out
}

fn push_pieces(text: &str, mut start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    while start < end {
        if end - start <= MAX_PIECE_BYTES {
            out.push((start, end));
            return;
        }
        let mut cut = start + MAX_PIECE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // Back up to whitespace in the last quarter, if there is any.
        if let Some(ws) = text[start + MAX_PIECE_BYTES * 3 / 4..cut].rfind(char::is_whitespace) {
            cut = start + MAX_PIECE_BYTES * 3 / 4 + ws + 1;
        }
        out.push((start, cut));
        start = cut;
    }
}

/// Byte offset → character offset for one text, in O(log n) per lookup.
struct CharIndex<'a> {
    /// (byte, chars before it) about every 4 KiB.
    marks: Vec<(usize, u64)>,
    text: &'a str,
    total: u64,
}

impl<'a> CharIndex<'a> {
    fn new(text: &'a str) -> CharIndex<'a> {
        let mut marks = vec![(0usize, 0u64)];
        let mut chars = 0u64;
        let mut next = 4096;
        for (i, _) in text.char_indices() {
            if i >= next {
                marks.push((i, chars));
                next = i + 4096;
            }
            chars += 1;
        }
        CharIndex {
            marks,
            text,
            total: chars,
        }
    }

    fn at(&self, byte: usize) -> u64 {
        let at = self.marks.partition_point(|(b, _)| *b <= byte) - 1;
        let (b, c) = self.marks[at];
        c + self.text[b..byte].chars().count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Words;
    impl Tokens for Words {
        fn offsets(&self, text: &str) -> Vec<(usize, usize)> {
            words(text)
        }
    }

    fn section(text: &str) -> Section {
        Section {
            page: Some(2),
            headings: vec!["Top".into(), "Sub".into()],
            text: text.into(),
        }
    }

    #[test]
    fn paragraphs_stay_whole_and_overlap_carries_the_last_one() {
        let text = "a b c\n\nd e f\n\ng h i\n\nj k l";
        let chunks = chunk(&[section(text)], &Words, 7, 3);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["a b c\n\nd e f", "d e f\n\ng h i", "g h i\n\nj k l"]
        );
        assert!(
            chunks
                .iter()
                .all(|c| c.page == Some(2) && c.heading == "Top > Sub")
        );
        for c in &chunks {
            let s: String = text
                .chars()
                .skip(c.char_start as usize)
                .take((c.char_end - c.char_start) as usize)
                .collect();
            assert_eq!(s, c.text);
        }
    }

    #[test]
    fn a_long_paragraph_is_windowed_by_tokens() {
        let text = (0..25)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chunks = chunk(&[section(&text)], &Words, 10, 2);
        assert!(chunks.iter().all(|c| c.tokens <= 10));
        assert!(chunks[0].text.starts_with("w0 ") && chunks[0].text.ends_with("w9"));
        assert!(chunks[1].text.starts_with("w8 "));
        assert!(chunks.last().unwrap().text.ends_with("w24"));
    }

    #[test]
    fn offsets_count_characters_across_sections() {
        let a = Section {
            page: Some(1),
            headings: vec![],
            text: "héllo wörld".into(),
        };
        let b = Section {
            page: Some(2),
            headings: vec![],
            text: "ça va".into(),
        };
        let chunks = chunk(&[a, b], &Words, 50, 0);
        assert_eq!((chunks[1].char_start, chunks[1].char_end), (13, 18));
        assert_eq!(chunks[1].page, Some(2));
    }

    #[test]
    fn a_huge_single_line_is_cut_into_bounded_pieces() {
        let text = "x".repeat(100_000);
        let pieces = paragraphs(&text);
        assert!(pieces.iter().all(|(a, b)| b - a <= MAX_PIECE_BYTES));
        assert_eq!(pieces.last().unwrap().1, 100_000);
    }
}
