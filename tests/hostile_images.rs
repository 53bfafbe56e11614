//! Hostile and extreme images (issue 20, B1 and B3): shapes that once asked for tens of
//! gigabytes or overflowed the resized width, truncated files, and the geometry of the resize
//! over every size and aspect ratio (property tests). Every such image is refused with an
//! error that names the bound, before any large buffer exists; everything within the bounds
//! gives a tensor of the crop's size.

use std::io::Cursor;

use dcd::features::preprocess::{
    check_dimensions, decode, decode_within, ImageError, ImageLimits, Interpolation, Preprocess,
};
use image::{DynamicImage, GrayImage, ImageFormat, Luma};
use proptest::prelude::*;

fn png(img: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A real PNG of `w x h` grey pixels (tiny on disk: one colour compresses to nothing).
fn flat_png(w: u32, h: u32) -> Vec<u8> {
    png(&DynamicImage::ImageLuma8(GrayImage::from_pixel(
        w,
        h,
        Luma([120]),
    )))
}

/// An 8x8 PNG whose header claims `w x h` (the CRC fixed so the header is valid).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = flat_png(8, 8);
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn imagenet() -> Preprocess {
    Preprocess::imagenet(256, 224, Interpolation::Bilinear)
}

/// B1: a 1 x 100000 PNG (275 bytes when well compressed) asked for a 19.7 GB resize buffer and aborted
/// the server. It is refused from its header, and the error names the flag.
#[test]
fn a_needle_thin_png_is_refused_not_resized() {
    let needle = flat_png(1, 100_000);
    let e = imagenet().run(&needle).unwrap_err();
    assert_eq!(
        e,
        ImageError::ExtremeAspect {
            width: 1,
            height: 100_000,
            max: 100
        }
    );
    assert!(e.to_string().contains("--max-aspect-ratio"), "{e}");
    // B3: 10000 x 1 cost 2.1 GB; 16777216 x 1 overflowed the resized width to 0.
    for (w, h) in [(10_000, 1), (16_777_216, 1), (1, 16_777_216)] {
        let e = imagenet().run(&png_claiming(w, h)).unwrap_err();
        assert!(
            matches!(e, ImageError::ExtremeAspect { .. }),
            "{w}x{h}: {e}"
        );
    }
}

/// The longest side ratio allowed is embedded as torchvision would (shorter side to 256,
/// centre crop), and a raised limit admits more.
#[test]
fn ratios_up_to_the_limit_are_embedded() {
    let p = imagenet();
    for (w, h) in [(100, 1), (1, 100), (3, 250), (4000, 40)] {
        let t = p.run(&flat_png(w, h)).unwrap();
        assert_eq!(t.len(), 3 * 224 * 224, "{w}x{h}");
        assert!(t.iter().all(|v| v.is_finite()));
    }
    let strict = ImageLimits {
        max_aspect_ratio: 2,
        ..ImageLimits::default()
    };
    assert!(matches!(
        p.run_within(&flat_png(30, 10), &strict),
        Err(ImageError::ExtremeAspect { max: 2, .. })
    ));
    let loose = ImageLimits {
        max_aspect_ratio: 1000,
        ..ImageLimits::default()
    };
    assert_eq!(
        p.run_within(&flat_png(1, 1000), &loose).unwrap().len(),
        3 * 224 * 224
    );
}

#[test]
fn pixel_and_byte_limits_name_their_flags() {
    let limits = ImageLimits {
        max_pixels: 1000,
        ..ImageLimits::default()
    };
    let e = decode_within(&flat_png(40, 40), &limits).unwrap_err();
    assert!(matches!(e, ImageError::TooLarge { max: 1000, .. }), "{e}");
    assert!(e.to_string().contains("--max-image-pixels"), "{e}");
    let limits = ImageLimits {
        max_file_bytes: 10,
        ..ImageLimits::default()
    };
    let e = imagenet().run_within(&flat_png(4, 4), &limits).unwrap_err();
    assert!(matches!(e, ImageError::FileTooLarge { max: 10, .. }), "{e}");
    assert!(e.to_string().contains("--max-image-mib"), "{e}");
}

/// A truncated JPEG used to decode "fine" with a grey fill; now it is an error.
#[test]
fn a_truncated_jpeg_is_an_error() {
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 77])
    }));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    let jpeg = out.into_inner();
    assert!(decode(&jpeg).is_ok());
    for cut in [jpeg.len() * 2 / 3, jpeg.len() - 2] {
        let e = decode(&jpeg[..cut]).unwrap_err();
        assert!(
            matches!(&e, ImageError::Corrupt(m) if m.contains("truncated")),
            "cut at {cut}: {e}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// resized_size never overflows or truncates: either an error, or the shorter side at
    /// `resize` and the longer side at floor(resize * long / short), in 32 bits.
    #[test]
    fn resized_size_is_exact_or_refused(
        w in 1u32..=u32::MAX,
        h in 1u32..=u32::MAX,
        resize in 1u32..=4096,
    ) {
        let p = Preprocess::imagenet(resize, resize.min(224), Interpolation::Bilinear);
        let (short, long) = (w.min(h) as u128, w.max(h) as u128);
        let want = (resize as u128 * long / short).max(1);
        match p.resized_size(w, h) {
            Ok((rw, rh)) => {
                let expected = if w <= h { (resize as u128, want) } else { (want, resize as u128) };
                prop_assert_eq!((rw as u128, rh as u128), expected);
            }
            Err(e) => {
                let fits = want <= u32::MAX as u128;
                if fits {
                    return Err(TestCaseError::fail(format!("{w}x{h} refused: {e}")));
                }
            }
        }
    }

    /// Whatever the header claims, an image the limits accept resizes into at most
    /// resize² x max_aspect_ratio pixels: the memory of a request is bounded by the flags.
    #[test]
    fn accepted_images_resize_into_bounded_buffers(
        w in 1u32..=u32::MAX,
        h in 1u32..=u32::MAX,
        ratio in 1u32..=10_000,
    ) {
        let limits = ImageLimits { max_aspect_ratio: ratio, ..ImageLimits::default() };
        let p = imagenet();
        if check_dimensions(w, h, &limits).is_ok() {
            let (rw, rh) = p.resized_size(w, h).unwrap();
            prop_assert!(rw as u64 * rh as u64 <= 256 * 256 * ratio as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Real images of extreme but allowed shapes, as small as one pixel: a tensor of the
    /// crop's size, finite, for both filters.
    #[test]
    fn extreme_small_images_give_a_crop_sized_tensor(
        w in 1u32..=120,
        h in 1u32..=120,
        bicubic in any::<bool>(),
    ) {
        let interpolation = if bicubic { Interpolation::Bicubic } else { Interpolation::Bilinear };
        let p = Preprocess::imagenet(64, 56, interpolation);
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 13 % 256) as u8, (y * 29 % 256) as u8, ((x + y) % 256) as u8])
        }));
        let result = p.run(&png(&img));
        if w.max(h) > 100 * w.min(h) {
            let refused = matches!(result, Err(ImageError::ExtremeAspect { .. }));
            prop_assert!(refused);
        } else {
            let t = result.unwrap();
            prop_assert_eq!(t.len(), 3 * 56 * 56);
            prop_assert!(t.iter().all(|v| v.is_finite()));
        }
    }
}
