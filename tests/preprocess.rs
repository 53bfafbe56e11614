//! Image decoding and preprocessing: every supported format, colour conversions, EXIF
//! orientation, the resize/crop/normalise geometry, and per-image errors for bad files
//! (empty, unknown, truncated, decompression bombs refused before allocation).

use std::io::Cursor;

use dcd::features::preprocess::{
    decode, ImageError, Interpolation, Preprocess, IMAGENET_MEAN, IMAGENET_STD, MAX_PIXELS,
};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage as ImgRgb};

/// Left half red, right half blue: survives lossy coding and shows rotations.
fn halves(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImgRgb::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    }))
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn near(a: &[u8], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

#[test]
fn every_supported_format_decodes_to_rgb() {
    let img = halves(40, 30);
    for (format, tol) in [
        (ImageFormat::Png, 0),
        (ImageFormat::Bmp, 0),
        (ImageFormat::Tiff, 0),
        (ImageFormat::WebP, 0),
        (ImageFormat::Gif, 12),
        (ImageFormat::Jpeg, 40),
    ] {
        let rgb = decode(&encode(&img, format)).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!((rgb.width, rgb.height), (40, 30), "{format:?}");
        assert_eq!(rgb.data.len(), 40 * 30 * 3);
        assert!(
            near(&rgb.data[..3], [230, 20, 20], tol),
            "{format:?}: {:?}",
            &rgb.data[..3]
        );
        let last = rgb.data.len() - 3;
        assert!(near(&rgb.data[last..], [20, 20, 230], tol), "{format:?}");
    }
}

#[test]
fn grey_alpha_and_16_bit_images_become_8_bit_rgb() {
    let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(5, 4, image::Luma([77])));
    let rgb = decode(&encode(&grey, ImageFormat::Png)).unwrap();
    assert!(rgb.data.chunks(3).all(|p| p == [77, 77, 77]));
    let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
        5,
        4,
        image::Rgba([10, 20, 30, 0]),
    ));
    let rgb = decode(&encode(&rgba, ImageFormat::Png)).unwrap();
    assert!(
        rgb.data.chunks(3).all(|p| p == [10, 20, 30]),
        "alpha is dropped, not composited"
    );
    let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
        5,
        4,
        Rgb([65535u16, 0, 32896]),
    ));
    let rgb = decode(&encode(&deep, ImageFormat::Png)).unwrap();
    assert!(
        rgb.data.chunks(3).all(|p| p == [255, 0, 128]),
        "{:?}",
        &rgb.data[..3]
    );
}

/// A JPEG with an EXIF APP1 segment holding only the orientation tag.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0*\0\0\0\x08"); // big-endian TIFF header, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let jpeg = encode(&halves(32, 16), ImageFormat::Jpeg);
    let plain = decode(&jpeg).unwrap();
    assert_eq!((plain.width, plain.height), (32, 16));
    // 6 = rotate 90° clockwise: the left (red) half becomes the top half.
    let rotated = decode(&with_orientation(&jpeg, 6)).unwrap();
    assert_eq!((rotated.width, rotated.height), (16, 32));
    let px = |x: u32, y: u32| &rotated.data[((y * rotated.width + x) * 3) as usize..][..3];
    assert!(near(px(8, 2), [230, 20, 20], 40), "{:?}", px(8, 2));
    assert!(near(px(8, 29), [20, 20, 230], 40), "{:?}", px(8, 29));
}

#[test]
fn bad_files_get_a_reason_each() {
    assert_eq!(decode(&[]), Err(ImageError::Empty));
    assert_eq!(
        decode(b"definitely not an image, just some text"),
        Err(ImageError::UnsupportedFormat)
    );
    let png = encode(&halves(64, 64), ImageFormat::Png);
    let e = decode(&png[..png.len() / 2]).unwrap_err();
    assert!(matches!(e, ImageError::Corrupt(_)), "{e}");

    // A PNG whose header claims 100000 x 100000 pixels: refused from the header alone.
    let mut bomb = encode(&halves(8, 8), ImageFormat::Png);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = decode(&bomb).unwrap_err();
    assert_eq!(
        e,
        ImageError::TooLarge {
            width: 100_000,
            height: 100_000,
            max: MAX_PIXELS
        }
    );
    assert!(e.to_string().contains("downscale"), "{e}");
}

#[test]
fn resize_crop_and_normalise_follow_torchvision() {
    let p = Preprocess::imagenet(256, 224, Interpolation::Bilinear);
    // Shorter side to 256, longer side truncated: 500x375 -> 341x256; 375x500 -> 256x341.
    assert_eq!(p.resized_size(500, 375).unwrap(), (341, 256));
    assert_eq!(p.resized_size(375, 500).unwrap(), (256, 341));
    assert_eq!(p.resized_size(300, 300).unwrap(), (256, 256));

    // A constant image normalises to (v/255 - mean)/std everywhere, in CHW order.
    let flat = DynamicImage::ImageRgb8(ImgRgb::from_pixel(500, 375, Rgb([200, 100, 50])));
    let t = p.run(&encode(&flat, ImageFormat::Png)).unwrap();
    assert_eq!(t.len(), 3 * 224 * 224);
    for (k, v) in [200.0f32, 100.0, 50.0].iter().enumerate() {
        let want = (v / 255.0 - IMAGENET_MEAN[k]) / IMAGENET_STD[k];
        let plane = &t[k * 224 * 224..(k + 1) * 224 * 224];
        assert!(plane.iter().all(|x| (x - want).abs() < 1e-5), "channel {k}");
    }

    // The crop is centred: a mirror-symmetric image gives a mirror-symmetric tensor.
    let sym = DynamicImage::ImageRgb8(ImgRgb::from_fn(400, 300, |x, _| {
        let d = (x as i32 - 200).unsigned_abs().min(x.abs_diff(199)) as u8;
        Rgb([d, d, d])
    }));
    let t = Preprocess::imagenet(256, 224, Interpolation::Bicubic)
        .run(&encode(&sym, ImageFormat::Png))
        .unwrap();
    for y in [0usize, 100, 223] {
        for x in 0..112 {
            let (a, b) = (t[y * 224 + x], t[y * 224 + 223 - x]);
            assert!((a - b).abs() < 0.05, "row {y}: {a} vs {b} at {x}");
        }
    }
}

fn read_expected(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[3, 32, 32]);
    npy.into_vec::<f32>().unwrap()
}

/// Parity with torchvision's PIL path (Resize(40), CenterCrop(32), ToTensor, Normalize) on the
/// fixtures that `scripts/make_preprocess_fixtures.py` writes.
#[test]
fn matches_torchvision_on_committed_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess");
    let mut worst = Vec::new();
    for name in [
        "landscape.png",
        "portrait.png",
        "grey.png",
        "rgba.png",
        "photo.jpg",
    ] {
        for (tag, interpolation) in [
            ("bilinear", Interpolation::Bilinear),
            ("bicubic", Interpolation::Bicubic),
        ] {
            let p = Preprocess {
                resize: 40,
                crop: 32,
                interpolation,
                mean: IMAGENET_MEAN,
                std: IMAGENET_STD,
            };
            let got = p.run_file(&dir.join(name), &Default::default()).unwrap();
            let want = read_expected(&dir.join(format!("{name}.{tag}.npy")));
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let mean = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / got.len() as f32;
            worst.push(format!("{name} {tag}: max {max:.4} mean {mean:.5}"));
            // One 8-bit level is 1/255/0.224 = 0.0175 after normalisation. PNGs decode to the same
            // pixels, so only rounding remains; JPEG decoders (zune-jpeg here, libjpeg under PIL)
            // differ by up to two levels.
            let (max_ok, mean_ok) = if name.ends_with(".jpg") {
                (0.036, 0.01)
            } else {
                (0.018, 0.001)
            };
            assert!(
                max <= max_ok && mean <= mean_ok,
                "{name} {tag}: max abs diff {max}, mean {mean}"
            );
        }
    }
    println!("{}", worst.join("\n"));
}

/// A CMYK JPEG (as Photoshop and print pipelines write) decodes to the same colours as the
/// RGB photo it was converted from (PIL's RGB→CMYK, `scripts/make_preprocess_fixtures.py`).
#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess");
    let cmyk = decode(&std::fs::read(dir.join("cmyk.jpg")).unwrap()).unwrap();
    let rgb = decode(&std::fs::read(dir.join("photo.jpg")).unwrap()).unwrap();
    assert_eq!((cmyk.width, cmyk.height), (rgb.width, rgb.height));
    let mean_abs: f64 = cmyk
        .data
        .iter()
        .zip(&rgb.data)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / rgb.data.len() as f64;
    println!("CMYK vs RGB mean |diff| {mean_abs:.2} levels");
    assert!(
        mean_abs < 6.0,
        "CMYK JPEG colours are off by {mean_abs} levels on average"
    );
}
