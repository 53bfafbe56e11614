//! Cache-derived blocking for the packed GEMM, read from the machine at run time: the
//! kernel's right-hand micro-panel (K steps × 128 bytes) is sized to a quarter of the L2,
//! and a block of left-hand rows to half of it. Sizes come from Linux's sysfs cache description; where it cannot be read
//! (another OS, a sandbox hiding /sys), Zen 4 / Skylake-era sizes are assumed.

use std::sync::OnceLock;

/// Bytes of one K step of a right-hand micro-panel: 32 columns of f32, or 32 columns of a
/// bf16 pair.
pub const STEP_BYTES: usize = 128;

/// The caches the blocking is derived from, per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    /// L1 data cache, bytes.
    pub l1d: usize,
    /// L2 cache, bytes.
    pub l2: usize,
    /// Where the sizes came from.
    pub source: CacheSource,
}

/// Where [`Caches`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// `/sys/devices/system/cpu/cpu0/cache`.
    Sysfs,
    /// Not readable here: 32 KiB L1d, 1 MiB L2 assumed.
    Assumed,
}

/// K steps per block and left-hand rows per block (4 bytes per row and K step: an f32 or a
/// bf16 pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// K steps per block.
    pub k_steps: usize,
    /// Left-hand rows per block (a multiple of the kernel's row count).
    pub rows: usize,
}

impl Caches {
    /// This machine's caches, read once.
    pub fn here() -> Caches {
        static CACHES: OnceLock<Caches> = OnceLock::new();
        *CACHES.get_or_init(|| {
            read_sysfs(std::path::Path::new("/sys/devices/system/cpu/cpu0/cache")).unwrap_or(
                Caches {
                    l1d: 32 << 10,
                    l2: 1 << 20,
                    source: CacheSource::Assumed,
                },
            )
        })
    }

    /// The blocking for a kernel of `kernel_rows` rows over `steps` K steps.
    pub fn blocking(&self, kernel_rows: usize, steps: usize) -> Blocking {
        // K blocks as long as a quarter of the L2 holds the micro-panel: the panel streams
        // from L2 at 128 bytes per 24 multiply-add instructions, far below its bandwidth,
        // while every K block past the first costs a pass over the outputs. Measured on Zen 4
        // (benches/cpu_gemm.rs, one thread): 128-step blocks (half the L1) ran the models'
        // shapes at 28-50 (f32) and 33-92 (bf16) G multiply-adds/s, whole-K blocks at 38-55
        // and 54-105.
        let k_steps = ((self.l2 / 4) / STEP_BYTES).max(64).min(steps.max(1));
        // Half the L2 for the block of left-hand rows (4 bytes per row and K step).
        let rows = ((self.l2 / 2) / (k_steps * 4)).clamp(kernel_rows, 4096);
        Blocking {
            k_steps,
            rows: rows / kernel_rows * kernel_rows,
        }
    }
}

/// Reads the L1 data and L2 sizes from a sysfs cache directory (`index*/level`, `type`,
/// `size` such as `32K`).
fn read_sysfs(dir: &std::path::Path) -> Option<Caches> {
    let (mut l1d, mut l2) = (None, None);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(bytes) = parse_size(size.trim()) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => l1d = Some(bytes),
            ("2", "Unified") | ("2", "Data") => l2 = Some(bytes),
            _ => {}
        }
    }
    Some(Caches {
        l1d: l1d?,
        l2: l2?,
        source: CacheSource::Sysfs,
    })
}

/// `48K`, `2048K`, `1M` or a plain byte count.
fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("2048K"), Some(2 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("0K"), None);
    }

    #[test]
    fn blocking_follows_the_caches() {
        let zen4 = Caches {
            l1d: 32 << 10,
            l2: 1 << 20,
            source: CacheSource::Assumed,
        };
        let sapphire_rapids = Caches {
            l1d: 48 << 10,
            l2: 2 << 20,
            source: CacheSource::Assumed,
        };
        let (a, b) = (
            zen4.blocking(12, 100_000),
            sapphire_rapids.blocking(12, 100_000),
        );
        assert_eq!(a.k_steps, 2048);
        assert_eq!(b.k_steps, 4096);
        assert!(a.rows % 12 == 0 && b.rows % 12 == 0 && a.rows >= 12);
        // A panel fits a quarter of the L2, a row block half of it.
        assert!(a.k_steps * STEP_BYTES <= zen4.l2 / 4);
        assert!(a.rows * a.k_steps * 4 <= zen4.l2 / 2);
        // A short K is one block, and the row block grows to fill the L2.
        let short = zen4.blocking(12, 192);
        assert_eq!(short.k_steps, 192);
        assert!(
            short.rows > a.rows && short.rows * 192 * 4 <= zen4.l2 / 2,
            "{short:?}"
        );
    }

    #[test]
    fn a_fake_sysfs_tree_is_read_and_a_partial_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |idx: &str, level: &str, kind: &str, size: &str| {
            let d = dir.path().join(idx);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("level"), format!("{level}\n")).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
        };
        write("index0", "1", "Data", "48K");
        write("index1", "1", "Instruction", "32K");
        assert_eq!(read_sysfs(dir.path()), None, "no L2 yet");
        write("index2", "2", "Unified", "2048K");
        write("index3", "3", "Unified", "107520K");
        let c = read_sysfs(dir.path()).unwrap();
        assert_eq!((c.l1d, c.l2), (48 << 10, 2 << 20));
    }
}
