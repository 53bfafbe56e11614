//! The report as one HTML file: thumbnails inlined as data URIs (each image read once), the
//! map as inline SVG, no script, nothing fetched from elsewhere.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use base64::Engine;

use super::{Item, Report};

/// Set and random-sample thumbnails in the strip.
const STRIP: usize = 16;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Thumbnails as data URIs, each file read once however often it is shown.
struct Thumbs {
    side: u32,
    made: HashMap<String, Option<String>>,
}

impl Thumbs {
    fn get(&mut self, path: &str) -> Option<String> {
        let side = self.side;
        self.made
            .entry(path.to_owned())
            .or_insert_with(|| thumbnail(Path::new(path), side))
            .clone()
    }

    fn figure(&mut self, out: &mut String, path: &str, caption: &str) {
        let side = self.side;
        let img = match self.get(path) {
            Some(uri) => format!(r#"<img src="{uri}" alt="{}">"#, escape(path)),
            None => format!(
                r#"<div class="missing" style="width:{side}px;height:{side}px">no image here</div>"#
            ),
        };
        let _ = write!(
            out,
            r#"<figure title="{}">{img}<figcaption>{caption}</figcaption></figure>"#,
            escape(path)
        );
    }
}

/// A JPEG thumbnail of an image file as a data URI, or None when it is not a readable image.
fn thumbnail(path: &Path, side: u32) -> Option<String> {
    let bytes = crate::features::preprocess::read_image_file(path, &Default::default()).ok()?;
    let img = crate::features::preprocess::decode(&bytes).ok()?;
    let jpeg = crate::features::thumbnail::thumbnail_jpeg(img, side).ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

pub(super) fn render(r: &Report, per_error: usize, side: u32) -> String {
    let mut thumbs = Thumbs {
        side,
        made: HashMap::new(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#1d2330}}section{{margin-bottom:2em;border-top:1px solid #ccc}}
.row{{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}}figure{{margin:0;width:{side}px;font-size:11px}}
figure img{{max-width:{side}px;max-height:{side}px;display:block}}.err figure{{outline:3px solid #c33}}
.missing{{background:#eee;display:flex;align-items:center;justify-content:center;color:#888}}
figcaption{{word-break:break-all}}table{{border-collapse:collapse}}td,th{{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd;font-size:13px}}
.bars td.bar{{width:320px}}.bar div{{height:8px;background:#2f5fd0;margin:1px 0}}.bar div.random{{background:#a9b1c1}}
.panels{{display:flex;flex-wrap:wrap;gap:2em}}.verdict{{color:#b7791f}}</style></head><body>
<h1>{title}</h1><p>{items} items from pool <b>{pool}</b> ({pool_items} items when built), backbone {backbone}, engine {engine}.</p>"#,
        title = escape(&r.title),
        items = r.items.len(),
        pool = escape(&r.pool),
        pool_items = r.pool_items,
        backbone = escape(&r.backbone),
        engine = escape(&r.engine),
    );
    overview(&mut out, r);
    if let Some(c) = &r.chance {
        map(&mut out, c);
        out.push_str("<section><h2>The set beside a random sample of the same size</h2><h3>The set</h3><div class=\"row\">");
        for it in r.items.iter().take(STRIP) {
            thumbs.figure(&mut out, &it.key, &label_caption(it));
        }
        out.push_str("</div><h3>A random sample of the pool</h3><div class=\"row\">");
        for it in c.random_items.iter().take(STRIP) {
            let caption = format!(
                "d={:.4}<br>{}",
                it.distance,
                escape(it.label.as_deref().unwrap_or("(no label)"))
            );
            thumbs.figure(&mut out, &it.key, &caption);
        }
        out.push_str("</div></section>");
    }
    for (e, entry) in r.errors.iter().enumerate() {
        let mut found: Vec<(usize, &Item)> = r
            .items
            .iter()
            .filter_map(|it| {
                it.found_by
                    .iter()
                    .find(|f| f.0 == e)
                    .map(|&(_, rank)| (rank, it))
            })
            .collect();
        found.sort_by_key(|f| f.0);
        let shown = if per_error == 0 {
            found.len()
        } else {
            per_error.min(found.len())
        };
        let _ = write!(
            out,
            r#"<section><h2>Error sample {}</h2><p>found {}, kept {} in the set{}; showing {shown} of them</p><div class="row"><div class="err">"#,
            escape(&entry.name),
            entry.found,
            entry.kept,
            entry
                .unusable
                .as_deref()
                .map(|m| format!(", <b>not used</b>: {}", escape(m)))
                .unwrap_or_default()
        );
        match &entry.image {
            Some(path) => thumbs.figure(&mut out, path, "error sample"),
            None => {
                let _ = write!(
                    out,
                    r#"<figure><div class="missing" style="width:{side}px;height:{side}px">sent as a vector</div><figcaption>error sample</figcaption></figure>"#
                );
            }
        }
        out.push_str("</div>");
        for (rank, it) in found.into_iter().take(shown) {
            let caption = format!("#{rank} d={:.4}<br>{}", it.distance, label_caption(it));
            thumbs.figure(&mut out, &it.key, &caption);
        }
        out.push_str("</div></section>");
    }
    out.push_str("</body></html>\n");
    out
}

fn label_caption(it: &Item) -> String {
    let weak = escape(it.label.as_deref().unwrap_or("(no label)"));
    let mut s = match &it.train_label {
        Some(t) if Some(t) != it.label.as_ref() => format!("{weak} → {}", escape(t)),
        _ => weak,
    };
    if let Some(v) = &it.review {
        let _ = write!(s, r#"<br><span class="verdict">{}</span>"#, escape(v));
    }
    s
}

fn overview(out: &mut String, r: &Report) {
    out.push_str(r#"<section><h2>Overview</h2><div class="panels">"#);
    // Labels handed to training, beside the weak labels of the random sample where there is one.
    let random = r.chance.as_ref().map(|c| &c.random_labels);
    let mut labels: Vec<&String> = r
        .label_counts
        .keys()
        .chain(random.into_iter().flat_map(|m| m.keys()))
        .collect();
    labels.sort();
    labels.dedup();
    labels.sort_by_key(|l| std::cmp::Reverse(r.label_counts.get(*l).copied().unwrap_or(0)));
    let max = labels
        .iter()
        .map(|l| {
            r.label_counts
                .get(*l)
                .copied()
                .unwrap_or(0)
                .max(random.and_then(|m| m.get(*l)).copied().unwrap_or(0))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = write!(
        out,
        "<div><h3>Labels handed to training{}</h3><table class=\"bars\">",
        if random.is_some() {
            " (blue) and a random sample's weak labels (grey)"
        } else {
            ""
        }
    );
    for l in labels.iter().take(30) {
        let n = r.label_counts.get(*l).copied().unwrap_or(0);
        let rn = random.and_then(|m| m.get(*l)).copied();
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="bar"><div style="width:{}%"></div>{}</td><td>{n}{}</td></tr>"#,
            escape(if l.is_empty() { "(none)" } else { l }),
            100 * n / max,
            rn.map(|x| format!(
                r#"<div class="random" style="width:{}%"></div>"#,
                100 * x / max
            ))
            .unwrap_or_default(),
            rn.map(|x| format!(" / {x}")).unwrap_or_default(),
        );
    }
    out.push_str("</table></div>");
    // Distances to the failures.
    out.push_str("<div><h3>Squared distance to the nearest failure</h3><table><tr><th></th><th>min</th><th>p10</th><th>median</th><th>p90</th><th>max</th></tr>");
    let row = |out: &mut String, name: &str, q: &crate::debugset::Quantiles| {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            q.min, q.p10, q.p50, q.p90, q.max
        );
    };
    if let Some(q) = &r.distances {
        row(out, "the set", q);
    }
    if let Some(q) = r.chance.as_ref().and_then(|c| c.random_distances.as_ref()) {
        row(out, "random sample", q);
    }
    out.push_str("</table></div>");
    if !r.modes.is_empty() {
        out.push_str("<div><h3>Failure modes</h3><table><tr><th>mode</th><th>error samples</th><th>budget</th><th>kept</th></tr>");
        for m in &r.modes {
            let errors: Vec<String> = m.errors.iter().map(u64::to_string).collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.mode,
                errors.join(", "),
                m.budget.map_or("–".into(), |b| b.to_string()),
                m.kept
            );
        }
        out.push_str("</table></div>");
    }
    if !r.funnel.is_empty() {
        out.push_str("<div><h3>Why candidates were left out</h3><table>");
        for (k, n) in &r.funnel {
            let _ = write!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape(k));
        }
        out.push_str("</table></div>");
    }
    out.push_str("</div></section>");
}

/// The map as SVG: the random sample grey, the set blue, the error samples red crosses.
fn map(out: &mut String, c: &crate::service::SetOverview) {
    let (w, h) = (720.0f32, 360.0f32);
    let all: Vec<&[f32; 2]> = c.errors.iter().chain(&c.items).chain(&c.random).collect();
    if all.is_empty() {
        return;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for p in &all {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let px = |p: &[f32; 2]| {
        (
            10.0 + (w - 20.0) * (p[0] - x0) / (x1 - x0).max(1e-9),
            10.0 + (h - 20.0) * (1.0 - (p[1] - y0) / (y1 - y0).max(1e-9)),
        )
    };
    let _ = write!(
        out,
        r#"<section><h2>Map</h2><p>The first two principal components ({:.0}% and {:.0}% of the variance) of the error samples (red), the set (blue) and a random sample of the pool (grey).</p><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" style="border:1px solid #ddd;background:#fff">"#,
        100.0 * c.explained[0],
        100.0 * c.explained[1]
    );
    for p in &c.random {
        let (x, y) = px(p);
        let _ = write!(
            out,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="#a9b1c1"/>"##
        );
    }
    for p in &c.items {
        let (x, y) = px(p);
        let _ = write!(
            out,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="#2f5fd0"/>"##
        );
    }
    for p in &c.errors {
        let (x, y) = px(p);
        let _ = write!(
            out,
            r##"<path d="M{:.1} {:.1}L{:.1} {:.1}M{:.1} {:.1}L{:.1} {:.1}" stroke="#c0392b" stroke-width="2"/>"##,
            x - 5.0,
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x + 5.0,
            y - 5.0,
            x - 5.0,
            y + 5.0
        );
    }
    out.push_str("</svg></section>");
}
