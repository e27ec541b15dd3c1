//! Text out of uploaded files, for the index: plain text, Word (.docx), Excel (.xlsx)
//! and PDF. Runs on a blocking thread over the decrypted bytes, after the upload has
//! committed (`Search::extract_file`). Hostile input is expected, so every stage is
//! bounded and nothing recurses:
//!
//! - the input is at most [`MAX_INPUT_BYTES`] (a larger file is found by name only);
//! - a zip entry is read through a cap of [`MAX_ENTRY_BYTES`] whatever its header
//!   claims, entries claiming a ratio above [`MAX_RATIO`] are refused unread, and all
//!   inflated data together is capped at [`MAX_INFLATED_BYTES`] (a zip bomb stops there);
//! - a PDF is scanned, not parsed into a tree: streams are found by keyword and
//!   inflated through the same cap, content streams are tokenised by a loop (nesting is
//!   a counter), so a deeply nested or truncated PDF costs time linear in its size;
//! - the text kept is at most [`MAX_TEXT_CHARS`] characters.
//!
//! A file that cannot be read yields an error and stays findable by name and tags.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::events::Event;
use tsunagu_protocol::files::FileKind;

/// Largest file whose text is extracted.
pub const MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;
/// Most bytes read out of one zip entry or one PDF stream.
pub const MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;
/// Most bytes inflated from one file, all entries or streams together.
pub const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;
/// Highest uncompressed/compressed ratio a zip entry may claim.
pub const MAX_RATIO: u64 = 200;
/// Most characters of text kept from one file.
pub const MAX_TEXT_CHARS: usize = 200_000;
/// Most zip entries looked at (an .xlsx has one per sheet).
const MAX_ENTRIES: usize = 256;

/// Why no text came out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtractError {
    #[error("not a kind whose text is extracted")]
    Unsupported,
    #[error("the file is larger than the extraction limit")]
    TooLarge,
    #[error("the container is malformed")]
    Malformed,
    #[error("the content expands beyond the extraction limit")]
    Bomb,
}

/// The text of `data`, a file of `kind`.
pub fn extract(kind: FileKind, data: &[u8]) -> Result<String, ExtractError> {
    if data.len() as u64 > MAX_INPUT_BYTES {
        return Err(ExtractError::TooLarge);
    }
    let mut out = Text::default();
    match kind {
        FileKind::Text => out.push_str(&String::from_utf8_lossy(data)),
        FileKind::Word => office(data, &mut out, |name| {
            name == "word/document.xml"
                || name.starts_with("word/header")
                || name.starts_with("word/footer")
                || name == "word/footnotes.xml"
        })?,
        FileKind::Excel => office(data, &mut out, |name| {
            name == "xl/sharedStrings.xml"
                || (name.starts_with("xl/worksheets/sheet") && name.ends_with(".xml"))
        })?,
        FileKind::Pdf => pdf(data, &mut out)?,
        _ => return Err(ExtractError::Unsupported),
    }
    Ok(out.text)
}

/// The text kept so far, capped.
#[derive(Default)]
struct Text {
    text: String,
    chars: usize,
}

impl Text {
    fn full(&self) -> bool {
        self.chars >= MAX_TEXT_CHARS
    }

    fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }

    fn push(&mut self, c: char) {
        if self.full() {
            return;
        }
        self.text.push(c);
        self.chars += 1;
    }

    fn gap(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with(' ') {
            self.push(' ');
        }
    }
}

/// Reads at most [`MAX_ENTRY_BYTES`] of `r`, counting against the file's budget.
fn read_capped(r: impl Read, budget: &mut u64) -> Result<Vec<u8>, ExtractError> {
    let cap = MAX_ENTRY_BYTES.min(*budget);
    let mut buf = Vec::new();
    let mut limited = r.take(cap + 1);
    // A read error half-way (a truncated or corrupt stream) keeps what was read.
    let _ = limited.read_to_end(&mut buf);
    if buf.len() as u64 > cap {
        return Err(ExtractError::Bomb);
    }
    *budget -= buf.len() as u64;
    Ok(buf)
}

/// Text of the XML parts of an Office Open XML file chosen by `wanted`.
fn office(data: &[u8], out: &mut Text, wanted: impl Fn(&str) -> bool) -> Result<(), ExtractError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(data)).map_err(|_| ExtractError::Malformed)?;
    let mut names: Vec<(usize, String)> = Vec::new();
    for i in 0..archive.len().min(MAX_ENTRIES) {
        if let Some(Ok(name)) = archive.name_for_index(i) {
            if wanted(&name) {
                names.push((i, name.into_owned()));
            }
        }
    }
    if names.is_empty() {
        return Err(ExtractError::Malformed);
    }
    // Document order: sharedStrings before sheets, sheet2 before sheet10.
    names.sort_by_key(|a| natural_key(&a.1));
    let mut budget = MAX_INFLATED_BYTES;
    for (i, _) in names {
        let entry = archive.by_index(i).map_err(|_| ExtractError::Malformed)?;
        if entry.size() > MAX_ENTRY_BYTES
            || entry.size() > entry.compressed_size().max(1).saturating_mul(MAX_RATIO)
        {
            return Err(ExtractError::Bomb);
        }
        let xml = read_capped(entry, &mut budget)?;
        xml_text(&xml, out);
        if out.full() {
            break;
        }
    }
    Ok(())
}

fn natural_key(name: &str) -> (u8, String, u64) {
    let rank = u8::from(!name.ends_with("sharedStrings.xml") && !name.ends_with("document.xml"));
    let digits: String = name.chars().filter(char::is_ascii_digit).collect();
    let stem: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
    (rank, stem, digits.parse().unwrap_or(0))
}

/// The character data of the text-bearing elements of WordprocessingML and
/// SpreadsheetML (`w:t`, `t`, `v`), a space between paragraphs, rows and cells. A
/// malformed document gives what was read before the fault.
fn xml_text(xml: &[u8], out: &mut Text) {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut in_text = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let local = e.local_name();
                in_text = matches!(local.as_ref(), b"t" | b"v");
                if matches!(
                    local.as_ref(),
                    b"p" | b"tab" | b"br" | b"c" | b"row" | b"si"
                ) {
                    out.gap();
                }
            }
            Ok(Event::Empty(e)) => {
                if matches!(e.local_name().as_ref(), b"tab" | b"br" | b"p") {
                    out.gap();
                }
            }
            Ok(Event::End(_)) => in_text = false,
            Ok(Event::Text(t)) if in_text => {
                if let Ok(s) = t.decode() {
                    out.push_str(&s);
                }
            }
            Ok(Event::GeneralRef(r)) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else {
                    match &*r {
                        b"amp" => out.push('&'),
                        b"lt" => out.push('<'),
                        b"gt" => out.push('>'),
                        b"quot" => out.push('"'),
                        b"apos" => out.push('\''),
                        _ => {}
                    }
                }
            }
            Ok(Event::CData(t)) if in_text => out.push_str(&String::from_utf8_lossy(&t)),
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        if out.full() {
            break;
        }
        buf.clear();
    }
}

// ---- PDF ------------------------------------------------------------------------------

/// A ToUnicode CMap: source code (its bytes as a number) → text, and the code width.
#[derive(Default, Debug)]
struct CMap {
    width: usize,
    map: HashMap<u32, String>,
}

/// Text of a PDF: the strings shown by its content streams, decoded through the fonts'
/// ToUnicode CMaps where they have one (as Japanese PDFs with CID fonts do), else as
/// single bytes.
fn pdf(data: &[u8], out: &mut Text) -> Result<(), ExtractError> {
    if !data.starts_with(b"%PDF-") {
        return Err(ExtractError::Malformed);
    }
    let mut budget = MAX_INFLATED_BYTES;
    // Every stream, by the number of the object that holds it.
    let mut streams: Vec<(Option<u32>, Vec<u8>)> = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(data, b"stream", at) {
        at = pos + 6;
        if pos >= 3 && &data[pos - 3..pos] == b"end" {
            continue;
        }
        let mut start = at;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) != Some(&b'\n') {
            continue;
        }
        start += 1;
        let dict_from = rfind(data, b"obj", pos).unwrap_or(0);
        let dict = &data[dict_from..pos];
        let object = object_number(data, dict_from);
        // A truncated file: the stream runs to the end.
        let end = find(data, b"endstream", start).unwrap_or(data.len());
        let raw = &data[start..end];
        at = end;
        let decoded = if find(dict, b"/FlateDecode", 0).is_some() {
            let decoder = flate2::read::ZlibDecoder::new(raw);
            read_capped(decoder, &mut budget)?
        } else if find(dict, b"/Filter", 0).is_some() {
            continue; // images and other filters carry no text we can read
        } else {
            raw.to_vec()
        };
        streams.push((object, decoded));
    }
    // Fonts: resource name → font object → ToUnicode stream object → CMap.
    let mut cmaps: HashMap<u32, CMap> = HashMap::new();
    for (object, s) in &streams {
        if let Some(n) = object {
            if find(s, b"begincmap", 0).is_some() {
                cmaps.insert(*n, parse_cmap(s));
            }
        }
    }
    let font_to_unicode = font_cmaps(data);
    let names = font_names(data);
    for (_, s) in &streams {
        if find(s, b"begincmap", 0).is_some() || find(s, b"BT", 0).is_none() {
            continue;
        }
        content_text(s, out, |font| {
            names
                .get(font)
                .and_then(|obj| font_to_unicode.get(obj))
                .and_then(|cm| cmaps.get(cm))
        });
        if out.full() {
            break;
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn rfind(hay: &[u8], needle: &[u8], before: usize) -> Option<usize> {
    hay[..before]
        .windows(needle.len())
        .rposition(|w| w == needle)
}

/// The `N` of `N G obj` just before `obj_at`.
fn object_number(data: &[u8], obj_at: usize) -> Option<u32> {
    let head = &data[obj_at.saturating_sub(24)..obj_at];
    let text = String::from_utf8_lossy(head);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() >= 2 {
        words[words.len() - 2].parse().ok()
    } else {
        None
    }
}

/// Font object number → its ToUnicode stream's object number, from `/ToUnicode N 0 R`
/// in every object that has one.
fn font_cmaps(data: &[u8]) -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    let mut at = 0;
    while let Some(pos) = find(data, b"/ToUnicode", at) {
        at = pos + 10;
        let Some(obj_at) = rfind(data, b"obj", pos) else {
            continue;
        };
        let (Some(font), Some(cmap)) = (object_number(data, obj_at), reference_after(data, at))
        else {
            continue;
        };
        out.insert(font, cmap);
    }
    out
}

/// Resource name (`F1`) → font object, from every `/Font << /F1 5 0 R … >>`.
fn font_names(data: &[u8]) -> HashMap<Vec<u8>, u32> {
    let mut out = HashMap::new();
    let mut at = 0;
    while let Some(pos) = find(data, b"/Font", at) {
        at = pos + 5;
        let rest = &data[at..data.len().min(at + 4096)];
        let trimmed = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        if !rest[trimmed..].starts_with(b"<<") {
            continue;
        }
        let Some(end) = find(rest, b">>", trimmed) else {
            continue;
        };
        let body = String::from_utf8_lossy(&rest[trimmed + 2..end]);
        let words: Vec<&str> = body.split_whitespace().collect();
        for w in words.windows(4) {
            if let (Some(name), Ok(obj), "R") = (w[0].strip_prefix('/'), w[1].parse(), w[3]) {
                out.insert(name.as_bytes().to_vec(), obj);
            }
        }
    }
    out
}

fn reference_after(data: &[u8], at: usize) -> Option<u32> {
    let rest = String::from_utf8_lossy(&data[at..data.len().min(at + 32)]);
    let words: Vec<&str> = rest.split_whitespace().collect();
    (words.len() >= 3 && words[2].starts_with('R'))
        .then(|| words[0].parse().ok())
        .flatten()
}

fn parse_cmap(s: &[u8]) -> CMap {
    let text = String::from_utf8_lossy(s);
    let mut cmap = CMap::default();
    let mut section = "";
    let mut pending: Vec<String> = Vec::new();
    for token in text.split(|c: char| c.is_whitespace() || c == '[' || c == ']') {
        match token {
            "beginbfchar" | "beginbfrange" | "begincodespacerange" => {
                section = token;
                pending.clear();
            }
            "endbfchar" | "endbfrange" | "endcodespacerange" => section = "",
            t if t.starts_with('<') && t.ends_with('>') && !section.is_empty() => {
                pending.push(t[1..t.len() - 1].to_owned());
                let need = if section == "beginbfrange" { 3 } else { 2 };
                if pending.len() == need {
                    cmap_entry(&mut cmap, section, &pending);
                    pending.clear();
                }
            }
            _ => {}
        }
        if cmap.map.len() > 65_536 {
            break;
        }
    }
    if cmap.width == 0 {
        cmap.width = 2;
    }
    cmap
}

fn cmap_entry(cmap: &mut CMap, section: &str, p: &[String]) {
    let code = |h: &str| u32::from_str_radix(h, 16).ok();
    match section {
        "begincodespacerange" => cmap.width = p[0].len().div_ceil(2).clamp(1, 4),
        "beginbfchar" => {
            if let Some(c) = code(&p[0]) {
                if cmap.width == 0 {
                    cmap.width = p[0].len().div_ceil(2).clamp(1, 4);
                }
                cmap.map.insert(c, utf16_hex(&p[1]));
            }
        }
        _ => {
            let (Some(lo), Some(hi)) = (code(&p[0]), code(&p[1])) else {
                return;
            };
            if cmap.width == 0 {
                cmap.width = p[0].len().div_ceil(2).clamp(1, 4);
            }
            let Some(base) = code(&p[2]) else {
                return;
            };
            for (i, c) in (lo..=hi.min(lo.saturating_add(65_535))).enumerate() {
                let unit = base.saturating_add(i as u32);
                if let Some(ch) = char::from_u32(unit) {
                    cmap.map.insert(c, ch.to_string());
                }
            }
        }
    }
}

/// UTF-16BE in hex → text.
fn utf16_hex(h: &str) -> String {
    let units: Vec<u16> = (0..h.len() / 4)
        .filter_map(|i| u16::from_str_radix(&h[i * 4..i * 4 + 4], 16).ok())
        .collect();
    String::from_utf16_lossy(&units)
}

/// The strings a content stream shows (`Tj`, `TJ`, `'`, `"`), decoded through the
/// current font's CMap. A loop over tokens; arrays and strings only set flags.
fn content_text<'a>(s: &[u8], out: &mut Text, cmap_of: impl Fn(&[u8]) -> Option<&'a CMap>) {
    let mut i = 0;
    let mut font: Vec<u8> = Vec::new();
    let mut last_name: Vec<u8> = Vec::new();
    let mut shown: Vec<Vec<u8>> = Vec::new();
    while i < s.len() {
        let b = s[i];
        match b {
            b'(' => {
                let (bytes, next) = literal_string(s, i + 1);
                shown.push(bytes);
                i = next;
                continue;
            }
            b'<' if s.get(i + 1) != Some(&b'<') => {
                let end = s[i + 1..]
                    .iter()
                    .position(|&c| c == b'>')
                    .map_or(s.len(), |p| p + i + 1);
                let hex: Vec<u8> = s[i + 1..end]
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_hexdigit)
                    .collect();
                let bytes = hex
                    .chunks(2)
                    .filter_map(|p| {
                        let pair = if p.len() == 2 {
                            [p[0], p[1]]
                        } else {
                            [p[0], b'0']
                        };
                        u8::from_str_radix(std::str::from_utf8(&pair).ok()?, 16).ok()
                    })
                    .collect();
                shown.push(bytes);
                i = end + 1;
                continue;
            }
            b'/' => {
                let end = s[i + 1..]
                    .iter()
                    .position(|c| c.is_ascii_whitespace() || b"/[]()<>".contains(c))
                    .map_or(s.len(), |p| p + i + 1);
                last_name = s[i + 1..end].to_vec();
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'\'' || c == b'"' || c == b'*' => {
                let end = s[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphabetic() || b"'\"*".contains(c)))
                    .map_or(s.len(), |p| p + i);
                let op = &s[i..end];
                match op {
                    b"Tf" => font = std::mem::take(&mut last_name),
                    b"Tj" | b"TJ" | b"'" | b"\"" => {
                        if op != b"Tj" && op != b"TJ" {
                            out.gap();
                        }
                        let cmap = cmap_of(&font);
                        for bytes in shown.drain(..) {
                            decode_shown(&bytes, cmap, out);
                        }
                    }
                    b"Td" | b"TD" | b"T*" | b"ET" => out.gap(),
                    _ => {}
                }
                if op != b"Tj" && op != b"TJ" && op != b"'" && op != b"\"" {
                    shown.clear();
                }
                i = end;
                continue;
            }
            _ => {}
        }
        if out.full() {
            return;
        }
        i += 1;
    }
}

/// A `( … )` string from just after its `(`: nesting counted, escapes resolved.
fn literal_string(s: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 1usize;
    while i < s.len() {
        let b = s[i];
        i += 1;
        match b {
            b'\\' if i < s.len() => {
                let e = s[i];
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' | b'f' => {}
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match s.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'\r' | b'\n' => {}
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(b);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    (out, i)
}

fn decode_shown(bytes: &[u8], cmap: Option<&CMap>, out: &mut Text) {
    match cmap {
        Some(cm) => {
            for code in bytes.chunks(cm.width.max(1)) {
                let key = code.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                if let Some(t) = cm.map.get(&key) {
                    out.push_str(t);
                }
            }
        }
        None => {
            // UTF-16BE with a byte-order mark, else one byte per character.
            if bytes.starts_with(&[0xFE, 0xFF]) {
                let units: Vec<u16> = bytes[2..]
                    .chunks(2)
                    .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
                    .collect();
                out.push_str(&String::from_utf16_lossy(&units));
            } else {
                for &b in bytes {
                    out.push(char::from(b));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn japanese_pdf(text: &str) -> Vec<u8> {
        sample::pdf(text)
    }

    #[test]
    fn a_pdf_with_a_cid_font_gives_its_japanese_text() {
        let pdf = japanese_pdf("褥瘡ケアの記録");
        assert_eq!(
            extract(FileKind::Pdf, &pdf).unwrap().trim(),
            "褥瘡ケアの記録"
        );
    }

    #[test]
    fn a_truncated_pdf_gives_what_it_has_or_nothing_but_never_fails_badly() {
        let pdf = japanese_pdf("退院時サマリー");
        for cut in [10, pdf.len() / 3, pdf.len() / 2, pdf.len() - 20] {
            let _ = extract(FileKind::Pdf, &pdf[..cut]);
        }
        assert_eq!(
            extract(FileKind::Pdf, b"not a pdf"),
            Err(ExtractError::Malformed)
        );
    }

    #[test]
    fn deep_nesting_in_a_pdf_costs_a_loop_not_the_stack() {
        let mut pdf = b"%PDF-1.4\n1 0 obj\n<< /Length 1 >>\nstream\nBT ".to_vec();
        pdf.extend(std::iter::repeat_n(b'[', 2_000_000));
        pdf.extend(std::iter::repeat_n(b'(', 2_000_000));
        pdf.extend(b" Tj ET\nendstream\nendobj\n%%EOF\n");
        let _ = extract(FileKind::Pdf, &pdf);
    }

    #[test]
    fn docx_and_xlsx_give_their_text() {
        let docx = sample::docx("訪問看護計画書", "血圧 120/80");
        assert_eq!(
            normalize_spaces(&extract(FileKind::Word, &docx).unwrap()),
            "訪問看護計画書 血圧 120/80"
        );
        let xlsx = sample::xlsx(&["服薬", "アムロジピン"], "5");
        let text = extract(FileKind::Excel, &xlsx).unwrap();
        assert!(
            text.contains("服薬") && text.contains("アムロジピン"),
            "{text}"
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_at_the_cap() {
        let bomb = sample::docx_bomb(40 * 1024 * 1024);
        assert!(bomb.len() < 2 * 1024 * 1024);
        assert_eq!(extract(FileKind::Word, &bomb), Err(ExtractError::Bomb));
    }

    #[test]
    fn the_samples_are_sniffed_as_what_they_are() {
        use crate::domain::files::sniff;
        let docx = sample::docx("a", "b");
        assert_eq!(
            sniff(&docx).0,
            FileKind::Word,
            "{:?}",
            &docx[..120.min(docx.len())]
        );
        assert_eq!(sniff(&sample::docx_bomb(1024)).0, FileKind::Word);
        assert_eq!(sniff(&sample::xlsx(&["a"], "1")).0, FileKind::Excel);
        assert_eq!(sniff(&sample::pdf("a")).0, FileKind::Pdf);
    }

    #[test]
    fn text_is_capped() {
        let big = "あ".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(
            extract(FileKind::Text, big.as_bytes())
                .unwrap()
                .chars()
                .count(),
            MAX_TEXT_CHARS
        );
    }

    fn normalize_spaces(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn flate_helper_round_trips() {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"abc").unwrap();
        let z = e.finish().unwrap();
        let mut budget = MAX_INFLATED_BYTES;
        assert_eq!(
            read_capped(flate2::read::ZlibDecoder::new(&z[..]), &mut budget).unwrap(),
            b"abc"
        );
    }
}

/// Small generated documents of each kind, for the tests here and in the integration
/// suite (generated, so no fixture can go stale). Not used by the server itself.
#[doc(hidden)]
pub mod sample {
    use std::io::Write;

    /// A one-page PDF showing `text` in a Type0 (CID) font through a ToUnicode CMap,
    /// its content stream deflated — the structure of a Japanese PDF from an office
    /// suite, written by hand.
    pub fn pdf(text: &str) -> Vec<u8> {
        let chars: Vec<char> = text.chars().collect();
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CMapName /Tsunagu-UCS2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        cmap.push_str(&format!("{} beginbfchar\n", chars.len()));
        for (i, c) in chars.iter().enumerate() {
            let mut units = [0u16; 2];
            let hex: String = c
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("{u:04X}"))
                .collect();
            cmap.push_str(&format!("<{:04X}> <{hex}>\n", i + 1));
        }
        cmap.push_str(
            "endbfchar\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n",
        );
        let codes: String = (1..=chars.len()).map(|i| format!("{i:04X}")).collect();
        let content = format!("BT\n/F1 24 Tf\n72 720 Td\n<{codes}> Tj\nET\n");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(content.as_bytes()).expect("deflate");
        let content = z.finish().expect("deflate");

        let mut out: Vec<u8> = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        let mut obj = |out: &mut Vec<u8>, n: usize, body: &[u8]| {
            offsets.push(out.len());
            out.extend(format!("{n} 0 obj\n").as_bytes());
            out.extend(body);
            out.extend(b"\nendobj\n");
        };
        obj(&mut out, 1, b"<< /Type /Catalog /Pages 2 0 R >>");
        obj(&mut out, 2, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>");
        obj(
            &mut out,
            3,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        );
        let mut s4 = format!(
            "<< /Length {} /Filter /FlateDecode >>\nstream\n",
            content.len()
        )
        .into_bytes();
        s4.extend(&content);
        s4.extend(b"\nendstream");
        obj(&mut out, 4, &s4);
        obj(
            &mut out,
            5,
            b"<< /Type /Font /Subtype /Type0 /BaseFont /KozMinPr6N-Regular /Encoding /Identity-H /DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        );
        obj(
            &mut out,
            6,
            b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /KozMinPr6N-Regular /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 6 >> >>",
        );
        let mut s7 = format!("<< /Length {} >>\nstream\n", cmap.len()).into_bytes();
        s7.extend(cmap.as_bytes());
        s7.extend(b"endstream");
        obj(&mut out, 7, &s7);
        let xref = out.len();
        out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes());
        for o in &offsets {
            out.extend(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                offsets.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, options).expect("zip entry");
            w.write_all(data).expect("zip write");
        }
        w.finish().expect("zip").into_inner()
    }

    const CONTENT_TYPES: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;

    const RELS: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

    const STYLES: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"/>"#;

    /// A .docx of two paragraphs (its parts in the order Word writes them, which is
    /// what content sniffing looks at).
    pub fn docx(first: &str, second: &str) -> Vec<u8> {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{first}</w:t></w:r></w:p><w:p><w:r><w:t xml:space="preserve">{second}</w:t></w:r></w:p></w:body></w:document>"#
        );
        zip_of(&[
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", RELS),
            ("word/document.xml", doc.as_bytes()),
            ("word/styles.xml", STYLES),
        ])
    }

    /// A .xlsx with `strings` in its shared strings and `number` in a cell.
    pub fn xlsx(strings: &[&str], number: &str) -> Vec<u8> {
        let mut shared = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
        );
        for s in strings {
            shared.push_str(&format!("<si><t>{s}</t></si>"));
        }
        shared.push_str("</sst>");
        let sheet = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>{number}</v></c></row></sheetData></worksheet>"#
        );
        zip_of(&[
            ("[Content_Types].xml", CONTENT_TYPES),
            ("xl/workbook.xml", b"<workbook/>"),
            ("xl/sharedStrings.xml", shared.as_bytes()),
            ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
        ])
    }

    /// A .docx whose document.xml inflates to `bytes` bytes of nothing useful.
    pub fn docx_bomb(bytes: usize) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(bytes as u64 > u32::MAX as u64);
        w.start_file("[Content_Types].xml", options).expect("zip");
        w.write_all(CONTENT_TYPES).expect("zip");
        w.start_file("_rels/.rels", options).expect("zip");
        w.write_all(RELS).expect("zip");
        w.start_file("word/styles.xml", options).expect("zip");
        w.write_all(STYLES).expect("zip");
        w.start_file("word/document.xml", options).expect("zip");
        let chunk = vec![b' '; 1024 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).expect("zip");
            left -= n;
        }
        w.finish().expect("zip").into_inner()
    }
}
