//! `dcd bench embed`: images/s of a backbone, decode+preprocess and forward pass measured
//! apart, so each can be compared with its peers (PIL/torchvision, PyTorch, onnxruntime).

use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::cli::print_json;
use crate::config::BenchEmbedArgs;
use crate::error::{Error, Result};
use crate::features::FeatureExtractor;

#[derive(Serialize)]
struct PreprocessReport {
    image: String,
    width: u32,
    height: u32,
    images: usize,
    per_core_images_per_s: f64,
    parallel_images_per_s: f64,
    threads: usize,
}

#[derive(Serialize)]
struct ForwardReport {
    batch: usize,
    images_per_s: f64,
    ms_per_batch: f64,
    /// CPU time ÷ wall time during the measurement (how many cores were busy).
    cores_busy: Option<f64>,
}

#[derive(Serialize)]
struct EmbedReport {
    backbone: String,
    weights: String,
    dim: usize,
    input_side: usize,
    threads: usize,
    preprocess: PreprocessReport,
    forward: Vec<ForwardReport>,
}

/// A 500×375 photo-like JPEG (gradients, shapes, noise), the size the targets are quoted at.
fn sample_jpeg() -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let img = image::RgbImage::from_fn(500, 375, |x, y| {
        let n: i32 = rng.gen_range(-12..12);
        let c = |v: i32| (v + n).clamp(0, 255) as u8;
        let ring = ((x as i32 - 250).pow(2) + (y as i32 - 180).pow(2) < 90 * 90) as i32 * 80;
        image::Rgb([
            c((x * 255 / 500) as i32),
            c((y * 255 / 375) as i32 + ring),
            c(128 + ((x as f32 / 23.0).sin() * 90.0) as i32),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut out)
        .encode_image(&img)
        .expect("encoding a generated image cannot fail");
    out
}

/// User + system CPU seconds of this process (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub(super) fn run(args: BenchEmbedArgs) -> Result<()> {
    if args.batch.is_empty() || args.batch.contains(&0) {
        return Err(Error::Usage(
            "--batch needs sizes ≥ 1, e.g. --batch 1,8,32".into(),
        ));
    }
    let model = args.model.choice().load(args.random_weights)?;
    let pre = *model.preprocess();
    let (bytes, image_name) = match &args.image {
        Some(p) => (
            crate::features::preprocess::read_image_file(p, &Default::default())
                .map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?,
            p.display().to_string(),
        ),
        None => (sample_jpeg(), "generated 500x375 JPEG".to_string()),
    };
    let decoded = crate::features::preprocess::decode(&bytes)
        .map_err(|e| Error::Usage(format!("{image_name}: {e}")))?;
    let n = args.images.max(1);
    pre.run(&bytes).map_err(|e| Error::Usage(e.to_string()))?;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(pre.run(&bytes).map_err(|e| Error::Usage(e.to_string()))?);
    }
    let per_core = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    (0..n)
        .into_par_iter()
        .for_each(|_| drop(std::hint::black_box(pre.run(&bytes))));
    let parallel = n as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let preprocess = PreprocessReport {
        image: image_name,
        width: decoded.width,
        height: decoded.height,
        images: n,
        per_core_images_per_s: per_core,
        parallel_images_per_s: parallel,
        threads,
    };

    let side = model.input_side();
    let mut forward = Vec::new();
    for &b in &args.batch {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(b as u64);
        let input: Vec<f32> = (0..b * 3 * side * side)
            .map(|_| rng.gen_range(-2.0..2.0))
            .collect();
        // Each call copies its input once (under 1% of a forward pass), as a caller's would.
        model.embed_pixels(input.clone(), b)?;
        let (t, cpu0) = (Instant::now(), cpu_seconds());
        let mut calls = 0usize;
        while calls < 2 || t.elapsed() < Duration::from_secs_f64(args.seconds) {
            std::hint::black_box(model.embed_pixels(input.clone(), b)?);
            calls += 1;
        }
        let wall = t.elapsed().as_secs_f64();
        let cores_busy = cpu0.zip(cpu_seconds()).map(|(a, z)| (z - a) / wall);
        forward.push(ForwardReport {
            batch: b,
            images_per_s: (b * calls) as f64 / wall,
            ms_per_batch: wall * 1e3 / calls as f64,
            cores_busy,
        });
    }
    let report = EmbedReport {
        backbone: model.spec().name.to_string(),
        weights: model.source().to_string(),
        dim: model.dim(),
        input_side: side,
        threads,
        preprocess,
        forward,
    };
    if args.json {
        print_json(&report);
        return Ok(());
    }
    println!(
        "{} ({}), {}-d, {} threads",
        report.backbone, report.weights, report.dim, threads
    );
    let p = &report.preprocess;
    println!(
        "decode+preprocess {} ({}x{}): {:.0} images/s per core, {:.0} images/s on {} threads",
        p.image, p.width, p.height, p.per_core_images_per_s, p.parallel_images_per_s, p.threads
    );
    println!(
        "{:>6} {:>10} {:>12} {:>6}",
        "batch", "images/s", "ms/batch", "cores"
    );
    for f in &report.forward {
        println!(
            "{:>6} {:>10.2} {:>12.1} {:>6}",
            f.batch,
            f.images_per_s,
            f.ms_per_batch,
            f.cores_busy.map_or("-".into(), |c| format!("{c:.2}"))
        );
    }
    Ok(())
}
