//! The stage clock of a GPU search ([`GpuExact::time_stages`](super::GpuExact::time_stages)):
//! at each stage boundary a CUDA timing event recorded on the search's stream and the host's
//! instant, read back as [`StageTime`]s once the call is done. Off unless asked for: each mark
//! costs a driver call.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream};

use super::stage_times::StageTime;
use super::GpuError;

/// Marks of the search call in progress (one call at a time: the bench's).
pub(super) struct StageClock {
    state: Mutex<ClockState>,
}

#[derive(Default)]
struct ClockState {
    /// Timing events, reused from call to call: mark i of a call records events[i].
    events: Vec<CudaEvent>,
    /// The current call's marks: the stage that ended there ("start" for the first) and when
    /// the host reached it.
    marks: Vec<(&'static str, Instant)>,
}

impl StageClock {
    pub(super) fn new() -> StageClock {
        StageClock {
            state: Mutex::new(ClockState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a call's marks (dropping those of a call that failed before it was read).
    pub(super) fn start(&self, stream: &Arc<CudaStream>) -> Result<(), GpuError> {
        let mut state = self.state();
        state.marks.clear();
        state.push(stream, "start")
    }

    /// Marks the end of stage `name` as far as the host has issued it.
    pub(super) fn mark(
        &self,
        stream: &Arc<CudaStream>,
        name: &'static str,
    ) -> Result<(), GpuError> {
        self.state().push(stream, name)
    }

    /// The stages marked since [`StageClock::start`], once the device has reached the last
    /// mark; the marks are then cleared.
    pub(super) fn read(&self) -> Result<Vec<StageTime>, GpuError> {
        let mut state = self.state();
        let mut stages = Vec::with_capacity(state.marks.len().saturating_sub(1));
        for i in 1..state.marks.len() {
            let ((_, was), (name, now)) = (state.marks[i - 1], state.marks[i]);
            let gpu_ms = state.events[i - 1]
                .elapsed_ms(&state.events[i])
                .map_err(GpuError::driver("reading a stage's timing events"))?;
            stages.push(StageTime {
                name,
                gpu_ms: f64::from(gpu_ms),
                host_ms: now.duration_since(was).as_secs_f64() * 1e3,
            });
        }
        state.marks.clear();
        Ok(stages)
    }
}

impl ClockState {
    fn push(&mut self, stream: &Arc<CudaStream>, name: &'static str) -> Result<(), GpuError> {
        let at = self.marks.len();
        if at == self.events.len() {
            let event = stream
                .context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(GpuError::driver("creating a stage timing event"))?;
            self.events.push(event);
        }
        self.events[at]
            .record(stream)
            .map_err(GpuError::driver("recording a stage timing event"))?;
        self.marks.push((name, Instant::now()));
        Ok(())
    }
}
