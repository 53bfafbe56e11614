//! Small JPEG copies of decoded images, for people to look at (the review page's thumbnails
//! and `dcd report`'s figures); never fed to a backbone.

use super::preprocess::{ImageError, RgbImage};

/// JPEG quality of every thumbnail: small files, no visible blocking at 160 px.
const QUALITY: u8 = 82;

/// The size of a thumbnail of a `w x h` image: the longer side `side` (never enlarged), the
/// ratio kept, neither side below one pixel.
pub fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    let long = w.max(h).max(1);
    if long <= side {
        return (w.max(1), h.max(1));
    }
    let scale = side as f64 / long as f64;
    (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    )
}

/// `img` shrunk to fit `side` x `side` and encoded as a JPEG.
pub fn thumbnail_jpeg(img: RgbImage, side: u32) -> Result<Vec<u8>, ImageError> {
    let (w, h) = fit(img.width, img.height, side);
    let (width, height) = (img.width, img.height);
    let full = image::RgbImage::from_raw(width, height, img.data).ok_or_else(|| {
        ImageError::Corrupt(format!(
            "a decoded {width}x{height} image does not hold {width}x{height} pixels"
        ))
    })?;
    let small = image::imageops::thumbnail(&full, w, h);
    let mut jpeg = Vec::new();
    // The JPEG encoder by name: `write_to` with a runtime format would compile every encoder
    // the image crate has into dcd (TIFF's alone is 1.6% of the crate's code).
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
        .encode_image(&small)
        .map_err(|e| ImageError::Corrupt(format!("encoding a thumbnail: {e}")))?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_ratio_and_never_enlarges() {
        assert_eq!(fit(640, 480, 160), (160, 120));
        assert_eq!(fit(480, 640, 160), (120, 160));
        assert_eq!(fit(100, 50, 160), (100, 50));
        assert_eq!(fit(10_000, 1, 160), (160, 1));
        assert_eq!(fit(0, 0, 160), (1, 1));
    }

    #[test]
    fn thumbnails_are_jpegs_of_the_fitted_size() {
        let img = RgbImage {
            width: 320,
            height: 200,
            data: (0..320 * 200 * 3).map(|i| (i % 251) as u8).collect(),
        };
        let jpeg = thumbnail_jpeg(img, 160).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (160, 100));
    }

    #[test]
    fn an_image_of_the_wrong_size_is_an_error_not_a_panic() {
        let img = RgbImage {
            width: 10,
            height: 10,
            data: vec![0; 12],
        };
        assert!(matches!(
            thumbnail_jpeg(img, 160),
            Err(ImageError::Corrupt(_))
        ));
    }
}
