//! How a pool resident on a GPU takes the rows appended to its store, decided before anything
//! is copied: the last segment's spare room first, then that segment reallocated half again as
//! large (while the device has room for the old and the new buffer at once), then new
//! segments: on the device while they fit, on the host (streamed through the staging buffer)
//! once the pool already streams. When neither fits, the copy is rebuilt from the store, which
//! splits the pool between device and host afresh. Pure (no CUDA), so every machine tests it.

/// Rows a new device segment holds at least, so that a pool fed a few rows at a time grows in
/// steps that amortise the copies rather than one segment per append.
pub const MIN_NEW_SEGMENT_ROWS: usize = 4096;

/// One segment as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRoom {
    /// Rows it holds.
    pub len: usize,
    /// Rows its buffers hold (device segments); a host segment takes rows up to the limit.
    pub capacity: usize,
    /// Rows on the device (else on the host, streamed at each search).
    pub on_device: bool,
}

/// What bounds the growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowthLimits {
    /// Rows one segment may hold (for a streaming pool, the staging buffer's rows).
    pub max_rows: usize,
    /// Segments that may live on the device.
    pub max_resident: usize,
    /// Device bytes the pool may take on top of what it holds now.
    pub free_bytes: usize,
    /// Device bytes one row takes (its elements and its norm).
    pub row_bytes: usize,
}

/// One step of an append, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowthStep {
    /// The next `rows` rows go into the last segment's spare room.
    Fill {
        /// How many.
        rows: usize,
    },
    /// The last segment (on the device) is reallocated to `capacity` rows, keeping its rows.
    Grow {
        /// Its new capacity.
        capacity: usize,
    },
    /// A new, empty segment of `capacity` rows on the device.
    NewDevice {
        /// Its capacity.
        capacity: usize,
    },
    /// A new, empty segment on the host.
    NewHost,
}

/// The steps that append `rows` rows to `segments`, or `None` when the device cannot take
/// them without splitting the pool anew (the caller rebuilds the copy).
pub fn plan(
    segments: &[SegmentRoom],
    rows: usize,
    limits: &GrowthLimits,
) -> Option<Vec<GrowthStep>> {
    let max_rows = limits.max_rows.max(1);
    let row_bytes = limits.row_bytes.max(1);
    let mut segs = segments.to_vec();
    let mut free = limits.free_bytes;
    let mut on_device = segs.iter().filter(|s| s.on_device).count();
    let streams = segs.iter().any(|s| !s.on_device);
    let mut steps = Vec::new();
    let mut left = rows;
    while left > 0 {
        if let Some(last) = segs.last_mut() {
            let room = room(last, max_rows);
            if room > 0 {
                let n = room.min(left);
                steps.push(GrowthStep::Fill { rows: n });
                last.len += n;
                left -= n;
                continue;
            }
            if last.on_device && last.capacity < max_rows {
                let capacity = (last.len + left)
                    .max(last.capacity + last.capacity / 2)
                    .min(max_rows);
                // The new buffer is allocated while the old one still holds the rows.
                if capacity.saturating_mul(row_bytes) <= free {
                    free -= (capacity - last.capacity) * row_bytes;
                    last.capacity = capacity;
                    steps.push(GrowthStep::Grow { capacity });
                    continue;
                }
            }
        }
        if streams {
            steps.push(GrowthStep::NewHost);
            segs.push(SegmentRoom {
                len: 0,
                capacity: max_rows,
                on_device: false,
            });
            continue;
        }
        if on_device >= limits.max_resident {
            return None;
        }
        let wanted = left.max(MIN_NEW_SEGMENT_ROWS).min(max_rows);
        let capacity = [wanted, left.min(max_rows)]
            .into_iter()
            .find(|&c| c.saturating_mul(row_bytes) <= free)?;
        free -= capacity * row_bytes;
        on_device += 1;
        steps.push(GrowthStep::NewDevice { capacity });
        segs.push(SegmentRoom {
            len: 0,
            capacity,
            on_device: true,
        });
    }
    Some(steps)
}

/// Rows `seg` takes without a reallocation.
fn room(seg: &SegmentRoom, max_rows: usize) -> usize {
    let capacity = if seg.on_device {
        seg.capacity.min(max_rows)
    } else {
        max_rows
    };
    capacity.saturating_sub(seg.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(len: usize, capacity: usize) -> SegmentRoom {
        SegmentRoom {
            len,
            capacity,
            on_device: true,
        }
    }

    fn host(len: usize) -> SegmentRoom {
        SegmentRoom {
            len,
            capacity: len,
            on_device: false,
        }
    }

    fn limits(max_rows: usize, max_resident: usize, free_rows: usize) -> GrowthLimits {
        GrowthLimits {
            max_rows,
            max_resident,
            free_bytes: free_rows * 10,
            row_bytes: 10,
        }
    }

    /// Applies `steps` the way the executor does and returns the segments after them, checking
    /// that they take exactly `rows` rows and never overfill a segment.
    fn apply(
        segments: &[SegmentRoom],
        rows: usize,
        steps: &[GrowthStep],
        max_rows: usize,
    ) -> Vec<SegmentRoom> {
        let mut segs = segments.to_vec();
        let mut taken = 0;
        for step in steps {
            match *step {
                GrowthStep::Fill { rows } => {
                    let last = segs.last_mut().expect("a segment to fill");
                    last.len += rows;
                    taken += rows;
                    let cap = if last.on_device {
                        last.capacity
                    } else {
                        max_rows
                    };
                    assert!(last.len <= cap, "overfilled: {last:?}");
                }
                GrowthStep::Grow { capacity } => {
                    let last = segs.last_mut().expect("a segment to grow");
                    assert!(last.on_device && capacity > last.capacity && capacity <= max_rows);
                    last.capacity = capacity;
                }
                GrowthStep::NewDevice { capacity } => {
                    assert!(capacity >= 1 && capacity <= max_rows);
                    segs.push(device(0, capacity));
                }
                GrowthStep::NewHost => segs.push(host(0)),
            }
        }
        assert_eq!(taken, rows, "rows taken");
        segs
    }

    #[test]
    fn spare_room_is_used_first() {
        let segs = [device(100, 150)];
        let steps = plan(&segs, 30, &limits(1000, 4, 0)).unwrap();
        assert_eq!(steps, vec![GrowthStep::Fill { rows: 30 }]);
    }

    #[test]
    fn the_last_segment_grows_by_half_or_to_what_is_needed() {
        let segs = [device(100, 100)];
        let steps = plan(&segs, 10, &limits(1000, 4, 10_000)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::Grow { capacity: 150 },
                GrowthStep::Fill { rows: 10 }
            ]
        );
        let steps = plan(&segs, 400, &limits(1000, 4, 10_000)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::Grow { capacity: 500 },
                GrowthStep::Fill { rows: 400 }
            ]
        );
        // Capped at the segment limit; the rest starts a new segment.
        let steps = plan(&segs, 1500, &limits(1000, 4, 10_000)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::Grow { capacity: 1000 },
                GrowthStep::Fill { rows: 900 },
                GrowthStep::NewDevice { capacity: 1000 },
                GrowthStep::Fill { rows: 600 },
            ]
        );
        apply(&segs, 1500, &steps, 1000);
    }

    #[test]
    fn growth_needs_room_for_both_buffers_at_once() {
        // 150 rows of new buffer do not fit in 120 free rows: a new segment instead, sized to
        // what is left when the usual minimum does not fit.
        let segs = [device(100, 100)];
        let steps = plan(&segs, 10, &limits(1000, 4, 120)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::NewDevice { capacity: 10 },
                GrowthStep::Fill { rows: 10 }
            ]
        );
    }

    #[test]
    fn new_segments_start_at_the_minimum_when_it_fits() {
        let segs = [device(5000, 5000)];
        let limits = limits(5000, 4, 1 << 20);
        let steps = plan(&segs, 3, &limits).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::NewDevice {
                    capacity: MIN_NEW_SEGMENT_ROWS
                },
                GrowthStep::Fill { rows: 3 }
            ]
        );
    }

    #[test]
    fn a_full_device_asks_for_a_rebuild() {
        // Every segment full and at the limit, and no more segments allowed on the device.
        let segs = [device(1000, 1000), device(1000, 1000)];
        assert_eq!(plan(&segs, 1, &limits(1000, 2, 1 << 20)), None);
        // Or no memory for even the rows themselves.
        assert_eq!(plan(&segs, 5, &limits(1000, 8, 4)), None);
    }

    #[test]
    fn a_streaming_pool_grows_on_the_host() {
        let segs = [device(1000, 1000), host(1000), host(400)];
        let steps = plan(&segs, 1700, &limits(1000, 1, 0)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::Fill { rows: 600 },
                GrowthStep::NewHost,
                GrowthStep::Fill { rows: 1000 },
                GrowthStep::NewHost,
                GrowthStep::Fill { rows: 100 },
            ]
        );
        apply(&segs, 1700, &steps, 1000);
    }

    #[test]
    fn an_empty_copy_takes_a_first_segment() {
        let steps = plan(&[], 10, &limits(1000, 4, 1 << 20)).unwrap();
        assert_eq!(
            steps,
            vec![
                GrowthStep::NewDevice { capacity: 1000 },
                GrowthStep::Fill { rows: 10 }
            ]
        );
        assert_eq!(plan(&[], 0, &limits(1000, 4, 0)), Some(vec![]));
    }

    #[test]
    fn many_small_appends_grow_geometrically() {
        // A pool fed 64 rows at a time: reallocations stay logarithmic in its size, and every
        // plan keeps within the memory it was given.
        let max_rows = 1 << 20;
        let mut segs = vec![device(64, 64)];
        let mut grows = 0;
        let mut free_rows = 4 << 20;
        for _ in 0..10_000 {
            let steps = plan(&segs, 64, &limits(max_rows, 8, free_rows)).unwrap();
            let before: usize = segs.iter().map(|s| s.capacity).sum();
            segs = apply(&segs, 64, &steps, max_rows);
            let after: usize = segs.iter().map(|s| s.capacity).sum();
            free_rows -= after - before;
            grows += steps
                .iter()
                .filter(|s| matches!(s, GrowthStep::Grow { .. }))
                .count();
        }
        let len: usize = segs.iter().map(|s| s.len).sum();
        assert_eq!(len, 64 * 10_001);
        assert_eq!(segs.len(), 1, "{segs:?}");
        assert!(grows <= 25, "{grows} reallocations");
        assert!(segs[0].capacity <= len * 3 / 2, "{:?}", segs[0]);
    }
}
