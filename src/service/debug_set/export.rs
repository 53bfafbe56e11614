//! A reviewed saved set as training data: its accepted and relabelled items (and, when
//! asked, the ones nobody reviewed), each once, with the reviewer's label first, then the
//! label the set handed to training. Rejected items are never exported. Written as CSV,
//! JSONL or an ImageFolder manifest (`label/file <TAB> source`) by the same rows everywhere.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::SavedDebugSet;
use crate::store::{Review, Verdict};
use crate::types::RowId;

/// One exported item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExportRow {
    /// Its row in the pool.
    pub row: RowId,
    /// Its key (the image path for ingested folders).
    pub key: String,
    /// The label to train with: the reviewer's, else the one the set handed to training.
    pub label: Option<String>,
    /// Its weak label.
    pub weak_label: Option<String>,
    /// Squared ℓ2 to the nearest error sample.
    pub distance: f32,
    /// `accepted`, `relabelled` or `unreviewed`.
    pub review: &'static str,
    /// Its failure mode.
    pub mode: usize,
}

/// The rows to train with, in the set's order.
pub fn export_rows(set: &SavedDebugSet, include_unreviewed: bool) -> Vec<ExportRow> {
    let reviews: HashMap<&str, &Review> = set.reviews.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut seen = HashSet::new();
    set.items
        .iter()
        .filter(|it| seen.insert(it.key.as_str()))
        .filter_map(|it| {
            let (label, review) = match reviews.get(it.key.as_str()).map(|r| &r.verdict) {
                Some(Verdict::Accept) => (it.train_label.clone(), "accepted"),
                Some(Verdict::Relabel(l)) => (Some(l.clone()), "relabelled"),
                Some(Verdict::Reject) => return None,
                None | Some(Verdict::Clear) if include_unreviewed => {
                    (it.train_label.clone(), "unreviewed")
                }
                None | Some(Verdict::Clear) => return None,
            };
            Some(ExportRow {
                row: it.row,
                key: it.key.clone(),
                label,
                weak_label: it.label.clone(),
                distance: it.distance,
                review,
                mode: it.mode,
            })
        })
        .collect()
}

/// `path,label,distance,weak_label,review`, one line per row.
pub fn csv_text(rows: &[ExportRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = || -> csv::Result<()> {
        w.write_record(["path", "label", "distance", "weak_label", "review"])?;
        for r in rows {
            w.write_record([
                r.key.as_str(),
                r.label.as_deref().unwrap_or(""),
                &r.distance.to_string(),
                r.weak_label.as_deref().unwrap_or(""),
                r.review,
            ])?;
        }
        w.flush()?;
        Ok(())
    };
    // Writing into memory fails only on a bug in the writer.
    write().expect("CSV into memory");
    String::from_utf8(w.into_inner().expect("CSV into memory")).expect("CSV of UTF-8 fields")
}

/// One JSON object per row.
pub fn jsonl_text(rows: &[ExportRow]) -> String {
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).expect("plain data serialises"));
        text.push('\n');
    }
    text
}

/// Where each row goes in an ImageFolder tree and where it comes from:
/// `label/<row>_<file name> <TAB> key`, one line per row.
pub fn imagefolder_manifest(rows: &[ExportRow]) -> String {
    let mut text = String::new();
    for r in rows {
        text.push_str(&image_folder_path(r.row, &r.key, r.label.as_deref()));
        text.push('\t');
        text.push_str(&r.key);
        text.push('\n');
    }
    text
}

/// `label/<row>_<file name>`: the place of an item in an ImageFolder tree (one folder per
/// label, `unlabelled` for none; path separators and dot names made safe).
pub fn image_folder_path(row: RowId, key: &str, label: Option<&str>) -> String {
    let l = label.filter(|l| !l.is_empty()).unwrap_or("unlabelled");
    let mut dir: String = l
        .chars()
        .map(|c| match c {
            '/' | '\\' | '\0' | '\t' | '\n' | '\r' => '_',
            c => c,
        })
        .collect();
    if dir == "." || dir == ".." {
        dir.insert(0, '_');
    }
    let name = std::path::Path::new(key)
        .file_name()
        .map(|n| n.to_string_lossy().replace(['\t', '\n', '\r'], "_"))
        .unwrap_or_else(|| "image".into());
    format!("{dir}/{row}_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SavedItem, SavedSet};

    fn set(items: &[(&str, &str)], reviews: Vec<(&str, Verdict)>) -> SavedDebugSet {
        let items: Vec<SavedItem> = items
            .iter()
            .enumerate()
            .map(|(i, (k, l))| SavedItem {
                row: i as RowId,
                key: (*k).into(),
                label: Some((*l).into()),
                train_label: Some((*l).into()),
                distance: i as f32,
                mode: 0,
                support: 1,
                found_by: vec![0],
            })
            .collect();
        SavedDebugSet {
            record: SavedSet {
                name: "s".into(),
                pool: "p".into(),
                parent: None,
                created_at: 0,
                items: items.len() as u64,
                manifest: String::new(),
                summary: String::new(),
            },
            manifest: serde_json::from_value(serde_json::json!({
                "dcd_version": "0", "created_at": 0,
                "pool": {"name": "p", "rows": 3, "uid": null, "dim": 2, "backbone": null,
                         "weights": null, "weights_sha256": null, "pooling": null},
                "request": serde_json::to_value(super::super::DebugSetRequest::new("p", vec![], 1)).unwrap(),
                "errors": [], "negatives": [], "holdout": []
            }))
            .unwrap(),
            summary: serde_json::Value::Null,
            items,
            reviews: reviews
                .into_iter()
                .map(|(k, v)| Review {
                    key: k.into(),
                    verdict: v,
                    reviewer: "r".into(),
                    at_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn accepted_first_with_the_reviewers_label_and_never_the_rejected() {
        let s = set(
            &[
                ("/a/x.jpg", "cat"),
                ("/a/y.jpg", "dog"),
                ("/b/z.jpg", "dog"),
                ("/a/x.jpg", "cat"),
            ],
            vec![
                ("/a/x.jpg", Verdict::Accept),
                ("/a/y.jpg", Verdict::Relabel("fox".into())),
                ("/b/z.jpg", Verdict::Reject),
            ],
        );
        let rows = export_rows(&s, true);
        let got: Vec<(&str, Option<&str>, &str)> = rows
            .iter()
            .map(|r| (r.key.as_str(), r.label.as_deref(), r.review))
            .collect();
        assert_eq!(
            got,
            [
                ("/a/x.jpg", Some("cat"), "accepted"),
                ("/a/y.jpg", Some("fox"), "relabelled")
            ]
        );
        let s = set(&[("/a/x.jpg", "cat"), ("/a/w.jpg", "../..")], vec![]);
        assert!(export_rows(&s, false).is_empty());
        let rows = export_rows(&s, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            imagefolder_manifest(&rows),
            "cat/0_x.jpg\t/a/x.jpg\n.._../1_w.jpg\t/a/w.jpg\n"
        );
        assert!(csv_text(&rows)
            .starts_with("path,label,distance,weak_label,review\n/a/x.jpg,cat,0,cat,unreviewed\n"));
    }
}
