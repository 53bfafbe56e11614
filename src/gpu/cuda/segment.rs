//! The segments of a resident pool: where each one's rows live (device, or host and streamed
//! through the staging buffer), their norms on the device, and how the copy takes the rows
//! appended to the store since it was made ([`GpuExact::append`]), following the plan of
//! [`super::growth`] so that a pool fed a few rows at a time is never uploaded whole again.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use super::exact::{upload, GpuExact, POOL_SHARE};
use super::growth::{self, GrowthLimits, GrowthStep, SegmentRoom};
use super::host::HostRows;
use super::kernels::Rows;
use super::GpuError;
use crate::index::check_extend;
use crate::types::VectorView;

/// Where a segment's rows live: on the device, or (a pool larger than the device's share) on
/// the host, copied into the staging buffer for each search.
pub(super) enum Place {
    Device(Rows),
    Host(HostRows),
}

/// A run of consecutive pool rows.
pub(super) struct Segment {
    pub(super) place: Place,
    /// Squared norms of the rows as stored (the GEMM path's epilogue adds them), with room
    /// for `capacity` rows.
    pub(super) norms: CudaSlice<f32>,
    /// Pool row of the segment's first row.
    pub(super) first: usize,
    /// Rows it holds.
    pub(super) len: usize,
    /// Rows its device buffers hold; rows past `len` are never read.
    pub(super) capacity: usize,
}

/// What [`GpuExact::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// The new rows were copied in: into spare room, a grown last segment or new segments.
    Appended {
        /// Rows added.
        rows: usize,
        /// Segments reallocated (their rows copied on the device) on the way.
        reallocated: usize,
    },
    /// The device had no room for them beside the copy: it was made again from the store,
    /// split between device and host afresh.
    Rebuilt,
}

impl HostRows {
    fn upload(&self, stream: &Arc<CudaStream>) -> Result<Rows, GpuError> {
        const WHAT: &str = "uploading the pool";
        Ok(match self {
            HostRows::F32(v) => Rows::F32(upload(stream, v, WHAT)?),
            HostRows::F16(v) => Rows::F16(upload(stream, v, WHAT)?),
            HostRows::BF16(v) => Rows::BF16(upload(stream, v, WHAT)?),
        })
    }

    /// Copies these rows into `dst` from element `at` on (same element type, long enough).
    fn copy_to(&self, stream: &Arc<CudaStream>, dst: &mut Rows, at: usize) -> Result<(), GpuError> {
        let what = GpuError::driver("copying rows to the device");
        match (self, dst) {
            (HostRows::F32(v), Rows::F32(d)) => {
                stream.memcpy_htod(v, &mut d.slice_mut(at..at + v.len()))
            }
            (HostRows::F16(v), Rows::F16(d)) => {
                stream.memcpy_htod(v, &mut d.slice_mut(at..at + v.len()))
            }
            (HostRows::BF16(v), Rows::BF16(d)) => {
                stream.memcpy_htod(v, &mut d.slice_mut(at..at + v.len()))
            }
            _ => unreachable!("device rows are allocated in the pool's element type"),
        }
        .map_err(what)
    }

    /// Copies these rows to the front of `staging` (same element type, at least as long).
    pub(super) fn copy_into(
        &self,
        stream: &Arc<CudaStream>,
        staging: &mut Rows,
    ) -> Result<(), GpuError> {
        self.copy_to(stream, staging, 0)
    }
}

impl Rows {
    /// A copy of the first `keep` elements in a new buffer of `len` elements.
    fn grown(&self, stream: &Arc<CudaStream>, len: usize, keep: usize) -> Result<Rows, GpuError> {
        let copy = GpuError::driver("copying a segment into its larger buffer");
        let mut out = Rows::zeros(stream, self.dtype(), len)?;
        match (self, &mut out) {
            (Rows::F32(a), Rows::F32(b)) => {
                stream.memcpy_dtod(&a.slice(..keep), &mut b.slice_mut(..keep))
            }
            (Rows::F16(a), Rows::F16(b)) => {
                stream.memcpy_dtod(&a.slice(..keep), &mut b.slice_mut(..keep))
            }
            (Rows::BF16(a), Rows::BF16(b)) => {
                stream.memcpy_dtod(&a.slice(..keep), &mut b.slice_mut(..keep))
            }
            _ => unreachable!("the new buffer has the old one's element type"),
        }
        .map_err(copy)?;
        Ok(out)
    }
}

/// `capacity` norms on the device, the first ones `norms`.
fn norms_buffer(
    stream: &Arc<CudaStream>,
    norms: &[f32],
    capacity: usize,
) -> Result<CudaSlice<f32>, GpuError> {
    let mut buf = stream
        .alloc_zeros::<f32>(capacity.max(norms.len()))
        .map_err(GpuError::driver("allocating row norms"))?;
    if !norms.is_empty() {
        stream
            .memcpy_htod(norms, &mut buf.slice_mut(..norms.len()))
            .map_err(GpuError::driver("uploading row norms"))?;
    }
    Ok(buf)
}

impl Segment {
    /// `rows` (pool rows `first..first + len`) uploaded, with buffers of exactly that size.
    pub(super) fn on_device(
        stream: &Arc<CudaStream>,
        (rows, norms): (HostRows, Vec<f32>),
        first: usize,
        len: usize,
    ) -> Result<Segment, GpuError> {
        Ok(Segment {
            place: Place::Device(rows.upload(stream)?),
            norms: upload(stream, &norms, "uploading row norms")?,
            first,
            len,
            capacity: len,
        })
    }

    /// `rows` kept on the host, with device norms for up to `capacity` rows.
    pub(super) fn on_host(
        stream: &Arc<CudaStream>,
        (rows, norms): (HostRows, Vec<f32>),
        first: usize,
        capacity: usize,
    ) -> Result<Segment, GpuError> {
        let len = norms.len();
        Ok(Segment {
            place: Place::Host(rows),
            norms: norms_buffer(stream, &norms, capacity)?,
            first,
            len,
            capacity: capacity.max(len),
        })
    }

    fn room(&self) -> SegmentRoom {
        SegmentRoom {
            len: self.len,
            capacity: self.capacity,
            on_device: matches!(self.place, Place::Device(_)),
        }
    }

    /// Copies `rows` (converted, with their norms) in after the segment's rows.
    fn fill(
        &mut self,
        stream: &Arc<CudaStream>,
        (rows, norms): (HostRows, Vec<f32>),
        dim: usize,
    ) -> Result<(), GpuError> {
        let n = norms.len();
        assert!(
            self.len + n <= self.capacity,
            "the plan fills within capacity"
        );
        stream
            .memcpy_htod(&norms, &mut self.norms.slice_mut(self.len..self.len + n))
            .map_err(GpuError::driver("uploading row norms"))?;
        match &mut self.place {
            Place::Device(buf) => rows.copy_to(stream, buf, self.len * dim)?,
            Place::Host(host) => host.extend(rows),
        }
        self.len += n;
        Ok(())
    }

    /// Reallocates the device buffers to `capacity` rows, keeping the rows.
    fn grow(
        &mut self,
        stream: &Arc<CudaStream>,
        capacity: usize,
        dim: usize,
    ) -> Result<(), GpuError> {
        let Place::Device(buf) = &self.place else {
            unreachable!("the plan grows device segments only")
        };
        let rows = buf.grown(stream, capacity * dim, self.len * dim)?;
        let mut norms = stream
            .alloc_zeros::<f32>(capacity)
            .map_err(GpuError::driver("allocating row norms"))?;
        stream
            .memcpy_dtod(
                &self.norms.slice(..self.len),
                &mut norms.slice_mut(..self.len),
            )
            .map_err(GpuError::driver("copying row norms"))?;
        self.place = Place::Device(rows);
        self.norms = norms;
        self.capacity = capacity;
        Ok(())
    }
}

impl GpuExact {
    /// Brings the copy up to date with `vectors`, the pool it was made from after rows were
    /// appended to it: rows `len()..vectors.len()` are converted and copied in (into spare
    /// room, a grown last segment, or new segments; see [`super::growth`]). When the device
    /// cannot take them beside the copy, the copy is made again from `vectors`, split between
    /// device and host afresh ([`Growth::Rebuilt`]). On an error the copy still answers for
    /// the rows it holds ([`GpuExact::len`]).
    pub fn append(&mut self, vectors: VectorView<'_>) -> Result<Growth, GpuError> {
        check_extend(self.len, self.dim, &vectors)?;
        let rows = vectors.len() - self.len;
        let stream = self.kernels.stream.clone();
        let free = super::memory_pool::free_bytes(&stream)?;
        let limits = GrowthLimits {
            max_rows: self.segment_rows,
            max_resident: self.limit_resident,
            free_bytes: (free as f64 * POOL_SHARE) as usize,
            row_bytes: (self.dtype.bytes() + 4) * self.dim.max(1),
        };
        let rooms: Vec<SegmentRoom> = self.segments.iter().map(Segment::room).collect();
        let Some(steps) = growth::plan(&rooms, rows, &limits) else {
            self.rebuild(vectors)?;
            return Ok(Growth::Rebuilt);
        };
        let mut reallocated = 0;
        for step in steps {
            match step {
                GrowthStep::Fill { rows: n } => {
                    let first = self.len;
                    let converted = HostRows::convert(vectors, first, first + n, self.dtype);
                    let last = self.segments.last_mut().expect("the plan fills a segment");
                    last.fill(&stream, converted, self.dim)?;
                    self.len += n;
                }
                GrowthStep::Grow { capacity } => {
                    let last = self.segments.last_mut().expect("the plan grows a segment");
                    last.grow(&stream, capacity, self.dim)?;
                    reallocated += 1;
                }
                GrowthStep::NewDevice { capacity } => {
                    let rows = Rows::zeros(&stream, self.dtype, capacity * self.dim)?;
                    self.segments.push(Segment {
                        place: Place::Device(rows),
                        norms: norms_buffer(&stream, &[], capacity)?,
                        first: self.len,
                        len: 0,
                        capacity,
                    });
                }
                GrowthStep::NewHost => {
                    let empty = (HostRows::empty(self.dtype), Vec::new());
                    let segment = Segment::on_host(&stream, empty, self.len, self.segment_rows)?;
                    self.segments.push(segment);
                }
            }
        }
        // As after the first upload: other threads' streams read these rows next.
        stream
            .synchronize()
            .map_err(GpuError::driver("finishing the appended rows' upload"))?;
        Ok(Growth::Appended { rows, reallocated })
    }

    /// Makes the copy again from `vectors` under the same limits, freeing the old one first
    /// (both may not fit).
    fn rebuild(&mut self, vectors: VectorView<'_>) -> Result<(), GpuError> {
        self.segments.clear();
        self.staging = None;
        self.len = 0;
        // Frees are stream-ordered: once they are done the memory is back for the new split.
        self.kernels
            .stream
            .synchronize()
            .map_err(GpuError::driver("freeing the old copy"))?;
        let mut fresh = GpuExact::with_limits(
            &self.device,
            vectors,
            self.dtype,
            self.limit_rows,
            self.limit_resident,
        )?;
        fresh.max_tile_cols = self.max_tile_cols;
        fresh.tile_bytes = self.tile_bytes;
        fresh.mma_expected = self.mma_expected;
        fresh.stages = self.stages.take();
        fresh.choice = self.choice.clone();
        *self = fresh;
        Ok(())
    }
}
