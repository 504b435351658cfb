//! [`LabGuard`]: a lab that takes itself down when dropped, for tests (a failing assertion still cleans up).

use std::ops::{Deref, DerefMut};

use crate::{DownReport, Lab, LabError, LabSpec};

/// A lab that is taken down when dropped.
#[derive(Debug)]
pub struct LabGuard(Option<Lab>);

impl LabGuard {
    /// Brings a lab up; it goes down with the guard.
    pub fn up(spec: LabSpec) -> Result<Self, LabError> {
        Lab::up(spec).map(|lab| Self(Some(lab)))
    }

    /// Takes the lab down now, reporting what was removed.
    pub fn down(mut self) -> Result<DownReport, LabError> {
        match self.0.take() {
            Some(lab) => lab.down(),
            None => Ok(DownReport::default()),
        }
    }
}

impl Deref for LabGuard {
    type Target = Lab;

    fn deref(&self) -> &Lab {
        // Only `down(self)` empties it, and that consumes the guard.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("a LabGuard holds its lab until dropped"))
    }
}

impl DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("a LabGuard holds its lab until dropped"))
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take()
            && let Err(error) = lab.down()
        {
            tracing::warn!("taking the lab down: {error}");
        }
    }
}
