//! What one item may hold: key, label and metadata sizes, checked before anything is stored.

use super::NewItem;

/// Longest item key, in bytes (a path or URI; Linux paths stop at 4096).
pub const MAX_KEY_BYTES: usize = 4096;
/// Longest weak label, in bytes.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Largest metadata document, in bytes.
pub const MAX_METADATA_BYTES: usize = 64 << 10;

/// Checks an item's key, label and metadata against the limits above: the key non-empty,
/// no NUL in key or label (SQLite keeps it, but most tools that read keys back stop at it).
pub fn check_item(item: &NewItem) -> Result<(), String> {
    check_item_fields(&item.key, item.label.as_deref(), item.metadata.as_deref())
}

/// As [`check_item`], on the fields.
pub fn check_item_fields(
    key: &str,
    label: Option<&str>,
    metadata: Option<&str>,
) -> Result<(), String> {
    let text = |what: &str, s: &str, max: usize| {
        if s.len() > max {
            Err(format!(
                "the {what} is {} bytes, above the limit of {max}",
                s.len()
            ))
        } else if s.contains('\0') {
            Err(format!("the {what} contains a NUL character"))
        } else {
            Ok(())
        }
    };
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    text("key", key, MAX_KEY_BYTES)?;
    if let Some(label) = label {
        text("label", label, MAX_LABEL_BYTES)?;
    }
    if let Some(meta) = metadata {
        if meta.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "the metadata is {} bytes, above the limit of {MAX_METADATA_BYTES}",
                meta.len()
            ));
        }
    }
    Ok(())
}
