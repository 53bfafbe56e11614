//! Image decoding and preprocessing as torchvision does it for a backbone:
//! decode (JPEG, PNG, WebP, BMP, TIFF, GIF first frame) → apply EXIF orientation → RGB (grey
//! expanded, alpha dropped, 16-bit scaled to 8) → resize the shorter side with an antialiased
//! filter (PIL-style convolution, fast_image_resize) → center crop → normalise to CHW f32.
//!
//! Every image is held to [`ImageLimits`]: file size, pixel count and aspect ratio are checked
//! from the header before any pixel is allocated, and the resized size is computed with checked
//! arithmetic, so no input (a 275-byte PNG 1 pixel wide and 100000 high, say) can ask for more
//! memory than the limits allow. A truncated JPEG is an error, not an image with grey fill.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use fast_image_resize as fir;

pub use crate::limits::{ImageLimits, MAX_ASPECT_RATIO, MAX_FILE_BYTES, MAX_PIXELS};

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
    /// Header dimensions above the pixel limit.
    #[error("the image claims {width}x{height} pixels, above the limit of {max} pixels (--max-image-pixels); downscale it first")]
    TooLarge {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit.
        max: u64,
    },
    /// One side far longer than the other.
    #[error("the image is {width}x{height}, a side ratio above the limit of {max}:1 (--max-aspect-ratio); crop it into parts first")]
    ExtremeAspect {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit.
        max: u32,
    },
    /// The encoded file is above the size limit.
    #[error("the file is {bytes} bytes, above the limit of {max} bytes (--max-image-mib)")]
    FileTooLarge {
        /// Its size.
        bytes: u64,
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

    /// Decodes and preprocesses one encoded image into `3 x crop x crop` values (CHW), within
    /// the default [`ImageLimits`].
    pub fn run(&self, bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
        self.run_within(bytes, &ImageLimits::default())
    }

    /// As [`Preprocess::run`], within `limits`.
    pub fn run_within(&self, bytes: &[u8], limits: &ImageLimits) -> Result<Vec<f32>, ImageError> {
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(ImageError::FileTooLarge {
                bytes: bytes.len() as u64,
                max: limits.max_file_bytes,
            });
        }
        let (image, _lease) = decode_leased(bytes, limits)?;
        self.tensor(&image, limits)
    }

    /// As [`Preprocess::run_within`] for a file (a regular file, its size checked before it is
    /// read); the error names it.
    pub fn run_file(&self, path: &Path, limits: &ImageLimits) -> Result<Vec<f32>, ImageFileError> {
        let with_path = |error| ImageFileError {
            path: path.to_owned(),
            error,
        };
        let bytes = read_image_file(path, limits).map_err(with_path)?;
        self.run_within(&bytes, limits).map_err(with_path)
    }

    /// Size after resizing the shorter side to `resize` (torchvision truncates the longer
    /// side); an error when the longer side would not fit in 32 bits.
    pub fn resized_size(&self, width: u32, height: u32) -> Result<(u32, u32), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::ZeroSized { width, height });
        }
        let (short, long) = (width.min(height) as u64, width.max(height) as u64);
        // At most 2^32 * 2^32 / 1: u128 cannot overflow.
        let scaled = (self.resize as u128 * long as u128 / short as u128).max(1);
        let scaled = u32::try_from(scaled).map_err(|_| ImageError::ExtremeAspect {
            width,
            height,
            max: (u32::MAX / self.resize.max(1)).max(1),
        })?;
        Ok(if width <= height {
            (self.resize, scaled)
        } else {
            (scaled, self.resize)
        })
    }

    /// Resizes, crops and normalises a decoded image into CHW values; its size is held to
    /// `limits` first (the resize allocates in proportion to the aspect ratio).
    pub fn tensor(&self, img: &RgbImage, limits: &ImageLimits) -> Result<Vec<f32>, ImageError> {
        check_dimensions(img.width, img.height, limits)?;
        let (w, h) = self.resized_size(img.width, img.height)?;
        let resized = resize(img, w, h, self.interpolation)?;
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
        Ok(out)
    }
}

/// Reads an image file within `limits`: a regular file only, its size checked first.
pub fn read_image_file(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>, ImageError> {
    crate::files::read_regular(path, limits.max_file_bytes).map_err(|e| match e {
        crate::files::ReadError::TooLarge { bytes, max } => ImageError::FileTooLarge { bytes, max },
        crate::files::ReadError::Io(reason) => ImageError::Unreadable(reason),
        other @ crate::files::ReadError::NotRegular { .. } => {
            ImageError::Unreadable(other.to_string())
        }
    })
}

/// Decodes an encoded image to 8-bit RGB with its EXIF orientation applied, within the
/// default [`ImageLimits`].
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_within(bytes, &ImageLimits::default())
}

/// As [`decode`], within `limits` (pixels and aspect ratio; the byte limit is the caller's,
/// who holds the bytes already).
pub fn decode_within(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, ImageError> {
    decode_leased(bytes, limits).map(|(image, _)| image)
}

/// As [`decode_within`], with the share of the process's decode budget that the image took
/// (its decoded form and the RGB copy, from the header): keep it until done with the image.
fn decode_leased(
    bytes: &[u8],
    limits: &ImageLimits,
) -> Result<(RgbImage, super::decode_budget::Lease), ImageError> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageError::UnsupportedFormat);
    };
    if format == image::ImageFormat::Jpeg && !super::jpeg::is_complete(bytes) {
        return Err(ImageError::Corrupt(
            "the JPEG stops before its end marker (a truncated file)".into(),
        ));
    }
    let mut decoder_limits = image::Limits::default();
    // Room for the largest allowed image in 16-bit RGBA, the widest form a decoder produces.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    let pixels = width as u64 * height as u64;
    let need = pixels * (decoder.color_type().bytes_per_pixel() as u64 + 3);
    let lease = super::decode_budget::lease(need, limits.max_decode_bytes);
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(classify)?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    Ok((
        RgbImage {
            width: rgb.width(),
            height: rgb.height(),
            data: rgb.into_raw(),
        },
        lease,
    ))
}

/// Refuses header dimensions outside `limits` (no pixel is allocated yet).
pub fn check_dimensions(width: u32, height: u32, limits: &ImageLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSized { width, height });
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    let (short, long) = (width.min(height) as u64, width.max(height) as u64);
    if long > short * limits.max_aspect_ratio.max(1) as u64 {
        return Err(ImageError::ExtremeAspect {
            width,
            height,
            max: limits.max_aspect_ratio,
        });
    }
    Ok(())
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
fn resize(
    img: &RgbImage,
    w: u32,
    h: u32,
    interpolation: Interpolation,
) -> Result<Vec<u8>, ImageError> {
    let filter = match interpolation {
        Interpolation::Bilinear => fir::FilterType::Bilinear,
        Interpolation::Bicubic => fir::FilterType::CatmullRom,
    };
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(filter));
    let mut resizer = fir::Resizer::new();
    let mut pass = |data: &[u8], from: (u32, u32), to: (u32, u32)| {
        if from == to {
            return Ok(data.to_vec());
        }
        let failed = |e: &dyn std::fmt::Display| {
            ImageError::Corrupt(format!(
                "cannot resize {}x{} to {}x{}: {e}",
                from.0, from.1, to.0, to.1
            ))
        };
        // Typed images: the untyped `resize` dispatches over all thirteen pixel types, and
        // every one of them is compiled into dcd (a quarter of the crate's code).
        let src =
            fir::images::TypedImageRef::<fir::pixels::U8x3>::from_buffer(from.0, from.1, data)
                .map_err(|e| failed(&e))?;
        let mut out = vec![0u8; to.0 as usize * to.1 as usize * 3];
        let mut dst =
            fir::images::TypedImage::<fir::pixels::U8x3>::from_buffer(to.0, to.1, &mut out)
                .map_err(|e| failed(&e))?;
        resizer
            .resize_typed(&src, &mut dst, &options)
            .map_err(|e| failed(&e))?;
        Ok(out)
    };
    let wide = pass(&img.data, (img.width, img.height), (w, img.height))?;
    pass(&wide, (w, img.height), (w, h))
}
