//! Whether a JPEG stream is whole. The JPEG decoder fills what a truncated file lacks with
//! grey and reports success; an embedding of half a photo and a grey band is silently wrong.
//! A complete baseline or progressive JPEG ends its last scan with an EOI marker, so the
//! stream is walked marker by marker (segments skipped by their length, so an EXIF
//! thumbnail's own EOI is never mistaken for the image's) until EOI or the end of the bytes.

/// True when `bytes`, a JPEG from its SOI marker on, reaches its EOI marker.
pub fn is_complete(bytes: &[u8]) -> bool {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    loop {
        // Any bytes up to the next marker (there should be none) and fill bytes (0xFF runs).
        match bytes[i..].iter().position(|&b| b == 0xFF) {
            Some(skip) => i += skip,
            None => return false,
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            // Standalone markers: no length follows.
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2) else {
            return false;
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len < 2 {
            return false;
        }
        i += len;
        if i > bytes.len() {
            return false;
        }
        if marker == 0xDA {
            match end_of_scan(&bytes[i..]) {
                Some(n) => i += n,
                None => return false,
            }
        }
    }
}

/// Length of the entropy-coded data at the start of `data`: up to the first marker that is
/// neither a stuffed zero (FF 00) nor a restart marker (FF D0-D7). None when the data ends first.
fn end_of_scan(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += data[i..].iter().position(|&b| b == 0xFF)?;
        match *data.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => i += 2,
            // A fill byte before a marker.
            0xFF => i += 1,
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, progressive_like_exif: bool) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut bytes)
            .encode_image(&img)
            .unwrap();
        if progressive_like_exif {
            // An APP1 segment holding a complete small JPEG (an EXIF thumbnail's shape).
            let thumb = jpeg(8, 8, false);
            let mut seg = vec![0xFF, 0xE1];
            seg.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
            seg.extend_from_slice(&thumb);
            bytes.splice(2..2, seg);
        }
        bytes
    }

    #[test]
    fn whole_jpegs_are_complete_and_every_truncation_is_not() {
        for with_thumb in [false, true] {
            let full = jpeg(64, 48, with_thumb);
            assert!(is_complete(&full));
            let mut trailing = full.clone();
            trailing.extend_from_slice(b"trailing bytes after EOI");
            assert!(is_complete(&trailing));
            for cut in (0..full.len() - 1)
                .step_by(7)
                .chain([full.len() - 2, full.len() - 1])
            {
                assert!(!is_complete(&full[..cut]), "cut at {cut} of {}", full.len());
            }
        }
    }
}
