//! Image decoding and preprocessing as torchvision does it for a backbone:
//! decode (JPEG, PNG, WebP, BMP, TIFF, GIF first frame) → apply EXIF orientation → RGB (grey
//! expanded, alpha dropped, 16-bit scaled to 8) → resize the shorter side with an antialiased
//! filter (PIL-style convolution, fast_image_resize) → center crop → normalise to CHW f32.
//!
//! Images above [`MAX_PIXELS`] are refused from their header, before any pixel is allocated.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize as fir;

/// Largest image accepted, in pixels (64 MP: above every camera sensor dcd expects, far below
/// what a decompression bomb claims).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Why one image could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// Not a format dcd decodes.
    #[error("unsupported or unrecognised image format; use JPEG, PNG, WebP, BMP, TIFF or GIF")]
    UnsupportedFormat,
    /// Width or height 0.
    #[error("the image is {width}x{height}: it has no pixels")]
    ZeroSized {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// Header dimensions above [`MAX_PIXELS`].
    #[error("the image claims {width}x{height} pixels, above the limit of {max} pixels; downscale it first")]
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit.
        max: u64,
    },
    /// The decoder failed (truncated or damaged data).
    #[error("the image data is corrupt or truncated: {0}")]
    Corrupt(String),
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    /// Decoded fine, but the model could not embed it (its batch failed or the model stopped).
    #[error("not embedded: {0}")]
    NotEmbedded(String),
}

/// An [`ImageError`] with the file it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {error}")]
pub struct ImageFileError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub error: ImageError,
}

/// A decoded 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// Resampling filter for the resize, as named by torchvision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Antialiased bilinear (triangle filter), torchvision's default.
    Bilinear,
    /// Antialiased bicubic (Catmull-Rom, a = -0.5, as PIL).
    Bicubic,
}

/// One backbone's preprocessing settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// Target length of the shorter side after resizing.
    pub resize: u32,
    /// Side of the square center crop (at most `resize`).
    pub crop: u32,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel mean, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, on the 0..1 scale.
    pub std: [f32; 3],
}

/// ImageNet mean used by torchvision, timm and the DINO checkpoints.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocess {
    /// The usual evaluation transform: resize `resize`, center crop `crop`, ImageNet statistics.
    pub fn imagenet(resize: u32, crop: u32, interpolation: Interpolation) -> Preprocess {
        Preprocess {
            resize,
            crop,
            interpolation,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Decodes and preprocesses one encoded image into `3 x crop x crop` values (CHW).
    pub fn run(&self, bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
        Ok(self.tensor(&decode(bytes)?))
    }

    /// As [`Preprocess::run`] for a file; the error names it.
    pub fn run_file(&self, path: &Path) -> Result<Vec<f32>, ImageFileError> {
        let bytes = std::fs::read(path).map_err(|e| ImageFileError {
            path: path.to_owned(),
            error: ImageError::Unreadable(e.to_string()),
        })?;
        self.run(&bytes).map_err(|error| ImageFileError {
            path: path.to_owned(),
            error,
        })
    }

    /// Size after resizing the shorter side to `resize` (torchvision truncates the longer side).
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let s = self.resize as u64;
        if width <= height {
            (self.resize, (s * height as u64 / width as u64) as u32)
        } else {
            ((s * width as u64 / height as u64) as u32, self.resize)
        }
    }

    /// Resizes, crops and normalises a decoded image into CHW values.
    pub fn tensor(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = self.resized_size(img.width, img.height);
        let resized = resize(img, w, h, self.interpolation);
        let c = self.crop.min(w).min(h) as usize;
        // torchvision: int(round((h - crop) / 2)) with Python's round-half-to-even.
        let top = ((h as usize - c) as f64 / 2.0).round_ties_even() as usize;
        let left = ((w as usize - c) as f64 / 2.0).round_ties_even() as usize;
        let mut out = vec![0.0f32; 3 * c * c];
        let scale: [f32; 3] = std::array::from_fn(|k| 1.0 / (255.0 * self.std[k]));
        let shift: [f32; 3] = std::array::from_fn(|k| self.mean[k] / self.std[k]);
        for y in 0..c {
            let row = &resized[((top + y) * w as usize + left) * 3..][..c * 3];
            for (x, px) in row.chunks_exact(3).enumerate() {
                for k in 0..3 {
                    out[k * c * c + y * c + x] = px[k] as f32 * scale[k] - shift[k];
                }
            }
        }
        out
    }
}

/// Decodes an encoded image to 8-bit RGB with its EXIF orientation applied.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageError::UnsupportedFormat);
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSized { width, height });
    }
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            width,
            height,
            max: MAX_PIXELS,
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(classify)?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    Ok(RgbImage {
        width: rgb.width(),
        height: rgb.height(),
        data: rgb.into_raw(),
    })
}

fn classify(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Unsupported(_) => ImageError::UnsupportedFormat,
        image::ImageError::Limits(l) => ImageError::Corrupt(format!("exceeds decoder limits: {l}")),
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// Antialiased resize of RGB bytes to `w x h` (PIL-style convolution). Like PIL, the width is
/// resampled first and the height second through an 8-bit intermediate; with overshooting
/// filters (bicubic) the order changes the result at hard edges.
fn resize(img: &RgbImage, w: u32, h: u32, interpolation: Interpolation) -> Vec<u8> {
    let filter = match interpolation {
        Interpolation::Bilinear => fir::FilterType::Bilinear,
        Interpolation::Bicubic => fir::FilterType::CatmullRom,
    };
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter));
    let mut resizer = fir::Resizer::new();
    let mut pass = |data: &[u8], from: (u32, u32), to: (u32, u32)| -> Vec<u8> {
        if from == to {
            return data.to_vec();
        }
        let src = fir::images::ImageRef::new(from.0, from.1, data, fir::PixelType::U8x3)
            .expect("buffer size matches width * height * 3");
        let mut dst = fir::images::Image::new(to.0, to.1, fir::PixelType::U8x3);
        resizer
            .resize(&src, &mut dst, &options)
            .expect("same pixel type and non-empty images");
        dst.into_vec()
    };
    let wide = pass(&img.data, (img.width, img.height), (w, img.height));
    pass(&wide, (w, img.height), (w, h))
}
