//! `dcd report`: one self-contained HTML page (thumbnails inlined as data URIs) showing,
//! for each error sample, the pool images it found, with distances and weak labels.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;

use super::export::{read_set, SetItem};
use crate::config::ReportArgs;
use crate::error::{Error, Result};

pub(super) fn run(args: ReportArgs) -> Result<()> {
    let items = read_set(&args.set)?;
    let summary_file = super::debug_set::summary_path(&args.set);
    let summary: serde_json::Value = std::fs::read_to_string(&summary_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "cannot read {} (written by `dcd debug-set` beside the set)",
                summary_file.display()
            ))
        })?;
    let errors: Vec<String> = summary["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let html = render(
        &items,
        &errors,
        &summary,
        args.per_error.max(1),
        args.thumb.max(16),
    );
    std::fs::write(&args.out, html)
        .map_err(Error::io(format!("cannot write {}", args.out.display())))?;
    println!(
        "report of {} error samples and {} items written to {}",
        errors.len(),
        items.len(),
        args.out.display()
    );
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JPEG thumbnail of an image file as a data URI, or None when it is not a readable image.
fn thumbnail(path: &Path, side: u32) -> Option<String> {
    let bytes = crate::features::preprocess::read_image_file(path, &Default::default()).ok()?;
    let img = crate::features::preprocess::decode(&bytes).ok()?;
    let buf = image::RgbImage::from_raw(img.width, img.height, img.data)?;
    let thumb = image::imageops::thumbnail(
        &buf,
        side.min(img.width.max(1) * side / img.width.max(img.height).max(1))
            .max(1),
        side.min(img.height.max(1) * side / img.width.max(img.height).max(1))
            .max(1),
    );
    let mut out = std::io::Cursor::new(Vec::new());
    thumb.write_to(&mut out, image::ImageFormat::Jpeg).ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    ))
}

fn figure(out: &mut String, path: &str, caption: &str, side: u32) {
    let img = match thumbnail(Path::new(path), side) {
        Some(uri) => format!(r#"<img src="{uri}" alt="{}">"#, escape(path)),
        None => {
            format!(r#"<div class="missing" style="width:{side}px;height:{side}px">no image</div>"#)
        }
    };
    let _ = write!(
        out,
        r#"<figure title="{}">{img}<figcaption>{caption}</figcaption></figure>"#,
        escape(path)
    );
}

fn render(
    items: &[SetItem],
    errors: &[String],
    summary: &serde_json::Value,
    per_error: usize,
    side: u32,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>dcd debug-train set</title>
<style>body{{font-family:sans-serif;margin:1.5em}}section{{margin-bottom:2em;border-top:1px solid #ccc}}
.row{{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}}figure{{margin:0;width:{side}px;font-size:11px}}
figure img{{max-width:{side}px;max-height:{side}px;display:block}}.err figure{{outline:3px solid #c33}}
.missing{{background:#eee;display:flex;align-items:center;justify-content:center;color:#888}}
figcaption{{word-break:break-all}}</style></head><body>
<h1>Debug-train set</h1><p>{} items from pool <b>{}</b> ({} items), backbone {}, engine {}; labels: {}</p>"#,
        items.len(),
        escape(summary["request"]["pool"].as_str().unwrap_or("?")),
        summary["pool_items"],
        escape(summary["backbone"].as_str().unwrap_or("raw vectors")),
        escape(summary["engine"].as_str().unwrap_or("?")),
        escape(&summary["label_counts"].to_string()),
    );
    for (e, name) in errors.iter().enumerate() {
        let mut found: Vec<(usize, f32, &SetItem)> = items
            .iter()
            .filter_map(|it| {
                it.found_by
                    .iter()
                    .find(|f| f.error == e)
                    .map(|f| (f.rank, f.distance, it))
            })
            .collect();
        found.sort_by_key(|f| f.0);
        let coverage = &summary["coverage"][e];
        let _ = write!(
            out,
            r#"<section><h2>Error sample {e}</h2><p>{} — found {}, kept {}{}</p><div class="row"><div class="err">"#,
            escape(name),
            coverage["found"],
            coverage["kept"],
            coverage["error"]
                .as_str()
                .map(|m| format!(", <b>not used</b>: {}", escape(m)))
                .unwrap_or_default()
        );
        figure(&mut out, name, "error sample", side);
        out.push_str("</div>");
        for (rank, distance, it) in found.into_iter().take(per_error) {
            let caption = format!(
                "#{rank} d={distance:.4}<br>{}",
                escape(it.label.as_deref().unwrap_or("(no label)"))
            );
            figure(&mut out, &it.key, &caption, side);
        }
        out.push_str("</div></section>");
    }
    out.push_str("</body></html>\n");
    out
}
