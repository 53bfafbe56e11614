//! Criterion benchmark of decode + preprocess (resize 256, crop 224, normalise) of a 500x375
//! JPEG on one thread; the target is at least 400 images/s per core.

// criterion_main! defines an undocumented `main`.
#![allow(missing_docs)]

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dcd::features::preprocess::{decode, Interpolation, Preprocess};

fn photo_like_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(500, 375, |x, y| {
        let v = ((x * 7 + y * 3) % 256) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

fn preprocess(c: &mut Criterion) {
    let jpeg = photo_like_jpeg();
    let p = Preprocess::imagenet(256, 224, Interpolation::Bilinear);
    let mut g = c.benchmark_group("jpeg_500x375");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| decode(&jpeg).unwrap()));
    g.bench_function("decode_resize_crop_normalise", |b| {
        b.iter(|| p.run(&jpeg).unwrap())
    });
    g.finish();
}

criterion_group!(benches, preprocess);
criterion_main!(benches);
