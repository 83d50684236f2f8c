//! Turning generated token bytes into text a client can be sent: whole UTF-8
//! characters only, and stop sequences withheld until it is certain they are not one.

/// Assembles the output of one generation.
#[derive(Debug, Default)]
pub struct TextAssembler {
    stops: Vec<String>,
    /// Bytes not yet forming complete characters.
    pending_bytes: Vec<u8>,
    /// Decoded text not yet sent because it may be the start of a stop sequence.
    held: String,
}

/// What one token produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text safe to send (may be empty).
    Text(String),
    /// A stop sequence was completed; the text before it is safe to send.
    Stopped(String),
}

impl TextAssembler {
    /// An assembler that watches for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Feeds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Piece {
        self.pending_bytes.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => s.len(),
            // An invalid sequence (not just an incomplete one) is replaced, so one bad
            // byte cannot hold back the rest of the output forever.
            Err(e) if e.error_len().is_some() => {
                let text = String::from_utf8_lossy(&self.pending_bytes).into_owned();
                self.pending_bytes.clear();
                self.held.push_str(&text);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let complete: Vec<u8> = self.pending_bytes.drain(..valid).collect();
        self.held
            .push_str(std::str::from_utf8(&complete).expect("validated above"));
        self.release()
    }

    /// Everything still held, at the end of the generation.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.pending_bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending_bytes));
            self.pending_bytes.clear();
        }
        out
    }

    fn release(&mut self) -> Piece {
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min()
        {
            let before = self.held[..at].to_string();
            self.held.clear();
            return Piece::Stopped(before);
        }
        // Hold back the longest suffix that is a prefix of some stop sequence.
        let keep = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Piece::Text(out)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on a
/// character boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut asm = TextAssembler::new(&stops);
        let mut out = String::new();
        for p in pieces {
            match asm.push(p) {
                Piece::Text(t) => out.push_str(&t),
                Piece::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&asm.finish());
        (out, false)
    }

    #[test]
    fn multibyte_characters_split_across_tokens_are_joined() {
        let euro = "€".as_bytes();
        let (out, stopped) = feed(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(out, "a€b");
        assert!(!stopped);
    }

    #[test]
    fn stop_sequence_across_tokens_is_withheld_and_cut() {
        let (out, stopped) = feed(&["\nUser:"], &[b"Hi", b" there\n", b"Us", b"er:", b" more"]);
        assert_eq!(out, "Hi there");
        assert!(stopped);
    }

    #[test]
    fn near_miss_of_a_stop_sequence_is_released() {
        let mut asm = TextAssembler::new(&["END".to_string()]);
        assert_eq!(asm.push(b"the E"), Piece::Text("the ".into()));
        assert_eq!(asm.push(b"N"), Piece::Text(String::new()));
        assert_eq!(asm.push(b"d"), Piece::Text("ENd".into()));
    }

    #[test]
    fn invalid_bytes_do_not_stall_output() {
        let (out, _) = feed(&[], &[b"a", &[0xff], b"b"]);
        assert_eq!(out, "a\u{fffd}b");
    }
}
