//! Cache-derived blocking for the packed GEMM, read from the machine at run time: the
//! kernel's right-hand micro-panel (K steps × 128 bytes) is sized to stay in half the L1
//! data cache while left-hand rows stream past it, and a block of left-hand rows to stay in
//! half of the L2. Sizes come from Linux's sysfs cache description; where it cannot be read
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

/// K steps per block and rows per block for a GEMM whose left-hand rows take `row_step_bytes`
/// per K step (4: f32 or one bf16 pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// K steps per block (a multiple of 8).
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

    /// The blocking for a kernel of `kernel_rows` rows.
    pub fn blocking(&self, kernel_rows: usize) -> Blocking {
        // Half the L1 for the right-hand micro-panel: the rest holds the left-hand rows being
        // broadcast and the output tile.
        let k_steps = ((self.l1d / 2) / STEP_BYTES).clamp(64, 512) / 8 * 8;
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
        let (a, b) = (zen4.blocking(12), sapphire_rapids.blocking(12));
        assert_eq!(a.k_steps, 128);
        assert_eq!(b.k_steps, 192);
        assert!(a.rows % 12 == 0 && b.rows % 12 == 0);
        assert!(b.rows > a.rows, "{a:?} {b:?}");
        // A panel of k_steps fits half the L1, a row block half the L2.
        assert!(a.k_steps * STEP_BYTES <= zen4.l1d / 2);
        assert!(a.rows * a.k_steps * 4 <= zen4.l2 / 2);
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
