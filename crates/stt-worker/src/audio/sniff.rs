//! Telling the container from the content, holding the client's file name to it, and telling
//! an upload that was cut off from a damaged one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::AudioError;

/// How much of the file the sniffer looks at (after any ID3v2 tag).
const HEAD_LEN: u64 = 64 * 1024;
/// How far into the head an MPEG or ADTS frame sync may start (encoders leave some junk).
const SYNC_SCAN: usize = 4096;

/// A container format told apart by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Wav,
    Mp3,
    Flac,
    Ogg,
    Webm,
    Matroska,
    Mp4,
    Adts,
}

/// The extensions checked against the content, and the kind each claims.
const EXTENSIONS: &[(&str, Kind)] = &[
    ("wav", Kind::Wav),
    ("wave", Kind::Wav),
    ("mp3", Kind::Mp3),
    ("mpga", Kind::Mp3),
    ("mpeg", Kind::Mp3),
    ("flac", Kind::Flac),
    ("ogg", Kind::Ogg),
    ("oga", Kind::Ogg),
    ("opus", Kind::Ogg),
    ("webm", Kind::Webm),
    ("weba", Kind::Webm),
    ("mkv", Kind::Webm),
    ("mka", Kind::Webm),
    ("m4a", Kind::Mp4),
    ("mp4", Kind::Mp4),
    ("aac", Kind::Mp4),
];

impl Kind {
    pub(super) fn container(self) -> &'static str {
        match self {
            Kind::Wav => "WAV",
            Kind::Mp3 => "MP3",
            Kind::Flac => "FLAC",
            Kind::Ogg => "Ogg",
            Kind::Webm => "WebM",
            Kind::Matroska => "Matroska",
            Kind::Mp4 => "MP4",
            Kind::Adts => "AAC",
        }
    }

    /// Kinds one extension family may name.
    fn family(self) -> Kind {
        match self {
            Kind::Matroska => Kind::Webm,
            Kind::Adts => Kind::Mp4,
            kind => kind,
        }
    }

    /// What an extension of this family claims.
    fn claim(self) -> &'static str {
        match self.family() {
            Kind::Wav => "WAV audio",
            Kind::Mp3 => "MP3 audio",
            Kind::Flac => "FLAC audio",
            Kind::Ogg => "Ogg audio (Vorbis or Opus)",
            Kind::Webm => "WebM/Matroska audio",
            _ => "M4A/AAC audio",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::Wav => "WAV audio",
            Kind::Mp3 => "MP3 audio",
            Kind::Flac => "FLAC audio",
            Kind::Ogg => "Ogg audio",
            Kind::Webm => "WebM media",
            Kind::Matroska => "Matroska media",
            Kind::Mp4 => "MP4/M4A media",
            Kind::Adts => "raw AAC audio",
        }
    }
}

/// The content's kind, or what it looks like instead.
pub(super) type Sniffed = Result<Kind, &'static str>;

/// Holds a known extension to the content; with none, the content alone decides.
pub(super) fn check_name(name: Option<&str>, sniffed: Sniffed) -> Result<Kind, AudioError> {
    let base = name
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .unwrap_or_default();
    let extension = base.rsplit_once('.').map(|(_, ext)| ext);
    let claimed = extension.and_then(|ext| {
        EXTENSIONS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(ext))
            .copied()
    });
    match (claimed, sniffed) {
        (Some((_, claim)), Ok(kind)) if claim.family() == kind.family() => Ok(kind),
        (None, Ok(kind)) => Ok(kind),
        (Some((extension, claim)), found) => Err(AudioError::ExtensionMismatch {
            extension,
            claimed: claim.claim(),
            actual: found.map_or_else(|looks_like| looks_like, Kind::description),
        }),
        (None, Err(looks_like)) => Err(AudioError::NotAudio { looks_like }),
    }
}

/// Tells the container from the first bytes, looking past ID3v2 tags (which precede MP3 and
/// sometimes other formats); also returns where the content starts after those tags.
pub(super) fn sniff(file: &mut File) -> io::Result<(Sniffed, u64)> {
    let mut offset = 0u64;
    let mut head = read_head(file, 0)?;
    for _ in 0..4 {
        let Some(tag) = head.get(..10).filter(|h| h.starts_with(b"ID3")) else {
            break;
        };
        if tag[6..10].iter().any(|b| b & 0x80 != 0) {
            break;
        }
        let size = tag[6..10].iter().fold(0u64, |n, b| n << 7 | u64::from(*b));
        let footer = if tag[5] & 0x10 != 0 { 10 } else { 0 };
        offset += 10 + size + footer;
        head = read_head(file, offset)?;
    }
    // A tag that runs to the end of the file is an MP3 cut off inside its tag.
    let cut_in_tag = offset > 0 && head.is_empty();
    let kind = detect(&head).or(cut_in_tag.then_some(Kind::Mp3));
    Ok((kind.ok_or_else(|| looks_like(&head)), offset))
}

/// Whether the container's own size fields (or the tags before it, which end at `start`) reach
/// past the end of the file: an upload cut off, rather than damaged, when the demuxer gives up.
pub(super) fn cut_short(kind: Kind, file: &mut File, len: u64, start: u64) -> io::Result<bool> {
    let head = read_head(file, 0)?;
    match kind {
        // ID3v2 tags state their size.
        _ if start >= len => Ok(true),
        Kind::Wav => Ok(
            match head
                .get(4..8)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            {
                // Streamed WAV leaves the size 0 or all ones.
                Some(0 | u32::MAX) | None => false,
                Some(size) => 8 + u64::from(size) > len,
            },
        ),
        Kind::Webm | Kind::Matroska => {
            // The EBML header element, then the Segment: each an ID and a size (a variable-length
            // integer whose all-ones value means unknown, as in streamed WebM).
            let Some((header_size, at)) = ebml_size(&head, 4) else {
                return Ok(false);
            };
            let segment = usize::try_from(header_size)
                .ok()
                .and_then(|n| at.checked_add(n));
            let segment_id = |s: &usize| {
                head.get(*s..)
                    .is_some_and(|h| h.starts_with(&[0x18, 0x53, 0x80, 0x67]))
            };
            let Some(segment) = segment.filter(segment_id) else {
                return Ok(false);
            };
            Ok(ebml_size(&head, segment + 4).is_some_and(|(size, at)| at as u64 + size > len))
        }
        Kind::Mp4 => {
            // Top-level boxes, each a 32-bit size (1: a 64-bit size follows) and a type.
            let (mut offset, mut header) = (0u64, [0u8; 16]);
            for _ in 0..1024 {
                if offset >= len {
                    return Ok(offset > len);
                }
                file.seek(SeekFrom::Start(offset))?;
                let read = file.by_ref().take(16).read(&mut header)?;
                let size = match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
                    _ if read < 8 => return Ok(true),
                    0 => return Ok(false),
                    1 if read < 16 => return Ok(true),
                    1 => u64::from_be_bytes(header[8..16].try_into().unwrap_or_default()),
                    size => u64::from(size),
                };
                if size < 8 {
                    return Ok(false);
                }
                offset = offset.saturating_add(size);
            }
            Ok(false)
        }
        Kind::Mp3 | Kind::Flac | Kind::Ogg | Kind::Adts => Ok(false),
    }
}

/// The Ogg audio codec symphonia has no reader for, if the file's first stream is in one: the
/// first page's first packet starts with the codec's signature.
pub(super) fn ogg_unsupported_codec(kind: Kind, file: &mut File) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[(b"Speex   ", "Speex"), (b"CELT    ", "CELT")];
    let head = read_head(file, 0).ok().filter(|_| kind == Kind::Ogg)?;
    let packet = head
        .get(26)
        .and_then(|&segments| head.get(27 + usize::from(segments)..));
    SIGNATURES
        .iter()
        .find(|(signature, _)| packet.is_some_and(|p| p.starts_with(signature)))
        .map(|(_, name)| *name)
}

/// An EBML element size at `at` (unknown sizes as `None`), and where the element's data starts.
fn ebml_size(head: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *head.get(at)?;
    let width = first.leading_zeros() as usize + 1;
    let bytes = head.get(at..at + width).filter(|_| width <= 8)?;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first) & (0xFF >> width), |v, b| {
            v << 8 | u64::from(*b)
        });
    (value != (1u64 << (7 * width)) - 1).then_some((value, at + width))
}

fn read_head(file: &mut File, offset: u64) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(offset))?;
    file.take(HEAD_LEN).read_to_end(&mut head)?;
    Ok(head)
}

fn detect(head: &[u8]) -> Option<Kind> {
    let at = |i: usize, magic: &[u8]| head.get(i..i + magic.len()) == Some(magic);
    if at(0, b"RIFF") && at(8, b"WAVE") {
        Some(Kind::Wav)
    } else if at(0, b"fLaC") {
        Some(Kind::Flac)
    } else if at(0, b"OggS") {
        Some(Kind::Ogg)
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        // The EBML header names the DocType near the start.
        let webm = head[..head.len().min(64)].windows(4).any(|w| w == b"webm");
        Some(if webm { Kind::Webm } else { Kind::Matroska })
    } else if at(4, b"ftyp") {
        Some(Kind::Mp4)
    } else if frames_follow(head, mp3_frame_len) {
        Some(Kind::Mp3)
    } else if frames_follow(head, adts_frame_len) {
        Some(Kind::Adts)
    } else {
        None
    }
}

/// A frame header near the start followed by another where its length says (or by the end).
fn frames_follow(head: &[u8], frame_len: fn(&[u8]) -> Option<usize>) -> bool {
    (0..head.len().min(SYNC_SCAN)).any(|i| match frame_len(&head[i..]) {
        Some(len) if i + len == head.len() => true,
        Some(len) => head.get(i + len..).and_then(frame_len).is_some(),
        None => false,
    })
}

/// The length of the MPEG-1/2/2.5 Layer III frame whose header starts `h`.
fn mp3_frame_len(h: &[u8]) -> Option<usize> {
    const KBPS_V1: [u32; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const KBPS_V2: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let h = h.get(..4)?;
    let (version, layer) = ((h[1] >> 3) & 3, (h[1] >> 1) & 3);
    let (bitrate, rate_index) = (usize::from(h[2] >> 4), usize::from((h[2] >> 2) & 3));
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 || version == 1 || layer != 1 {
        return None;
    }
    if bitrate == 0 || bitrate == 15 || rate_index == 3 {
        return None;
    }
    // MPEG-2 halves MPEG-1's rates, MPEG-2.5 quarters them.
    let rate = [44_100, 48_000, 32_000][rate_index] >> [2, 0, 1, 0][usize::from(version)];
    let (kbps, per) = if version == 3 {
        (KBPS_V1[bitrate], 144)
    } else {
        (KBPS_V2[bitrate], 72)
    };
    Some((per * kbps * 1000 / rate + u32::from((h[2] >> 1) & 1)) as usize)
}

/// The length of the ADTS frame whose header starts `h`.
fn adts_frame_len(h: &[u8]) -> Option<usize> {
    let h = h.get(..7)?;
    if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 || (h[2] >> 2) & 0xF > 12 {
        return None;
    }
    let len = usize::from(h[3] & 3) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
    (len > 7).then_some(len)
}

/// What content in no supported format looks like, for the error text.
fn looks_like(head: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF", "a PDF document"),
        (b"\x89PNG", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"PK\x03\x04", "a ZIP archive (or an office document)"),
        (b"FORM", "AIFF audio, which is not supported"),
        (b"caff", "CAF audio, which is not supported"),
        (b"#!AMR", "AMR audio, which is not supported"),
        (b"MThd", "MIDI, which is not recorded sound"),
        (b"wvpk", "WavPack audio, which is not supported"),
        (b"\x30\x26\xB2\x75", "WMA/ASF media, which is not supported"),
        (b"RIFF", "a RIFF file that is not WAV"),
    ];
    if let Some((_, what)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return what;
    }
    let sample = &head[..head.len().min(1024)];
    let text = match std::str::from_utf8(sample) {
        Ok(text) => text,
        // A character cut off by the sample's end is still text.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&sample[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => "\0",
    };
    if text.chars().all(|c| !c.is_control() || c.is_whitespace()) {
        "text"
    } else {
        "unrecognised binary data"
    }
}
