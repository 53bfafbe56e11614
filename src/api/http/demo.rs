//! The demo behind the page: built once in the background (on `--demo` at start, or when an
//! empty data directory's page asks), its state readable while it builds.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::service::demo::{DemoData, DemoOutcome, DEMO_SET};
use crate::service::Service;

/// Where the demo stands.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DemoState {
    /// The demo's data is there to build from.
    pub available: bool,
    /// A build is running.
    pub building: bool,
    /// What the last build made.
    pub built: Option<DemoOutcome>,
    /// Why the last build failed.
    pub error: Option<String>,
    /// The saved set the demo opens on.
    pub set: &'static str,
}

/// The demo's data and state.
#[derive(Clone, Debug)]
pub struct Demo {
    data: Option<DemoData>,
    state: Arc<Mutex<DemoState>>,
}

impl Demo {
    /// A demo built from `data` (None: this server has no demo data).
    pub fn new(data: Option<DemoData>) -> Demo {
        Demo {
            state: Arc::new(Mutex::new(DemoState {
                available: data.is_some(),
                set: DEMO_SET,
                ..Default::default()
            })),
            data,
        }
    }

    /// Where it stands (built once found built).
    pub fn state(&self, service: &Service) -> DemoState {
        let mut s = self.state.lock().clone();
        if s.built.is_none() && !s.building && service.demo_built() {
            s.built = Some(DemoOutcome {
                pool: crate::service::demo::DEMO_POOL.into(),
                set: DEMO_SET.into(),
                existed: true,
                seconds: 0.0,
            });
        }
        s
    }

    /// Starts a build on a thread of its own unless one runs or there is no data; returns
    /// whether one runs now.
    pub fn start(&self, service: Arc<Service>) -> bool {
        let Some(data) = self.data.clone() else {
            return false;
        };
        {
            let mut s = self.state.lock();
            if s.building {
                return true;
            }
            s.building = true;
            s.error = None;
        }
        let state = self.state.clone();
        std::thread::spawn(move || {
            let outcome = service.build_demo(&data);
            let mut s = state.lock();
            s.building = false;
            match outcome {
                Ok(o) => {
                    tracing::info!(set = %o.set, seconds = o.seconds, "the demo is ready");
                    s.built = Some(o);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the demo could not be built");
                    s.error = Some(e.to_string());
                }
            }
        });
        true
    }
}
