//! The interface's NAPI deferral while the dataplane busy-polls its queues
//! (`napi_defer_hard_irqs`, `gro_flush_timeout` in sysfs): set when the device
//! opens, the interface's own values restored when it closes.

use std::path::PathBuf;

use super::config::BusyPoll;
use crate::error::DriverError;

/// Empty polls the kernel tolerates before it re-arms the device's
/// interrupt (`napi_defer_hard_irqs`), as the kernel's AF_XDP documentation
/// suggests for busy polling.
const DEFER_HARD_IRQS: u32 = 2;

/// The interface's deferral settings as the dataplane set them, and the
/// values it found, written back on drop.
///
/// sysfs shows the interfaces of the network namespace it was mounted in, not
/// the calling thread's: a process in the interface's namespace needs that
/// namespace's sysfs (`ip netns exec` mounts it); a thread that only entered
/// the namespace (`setns`) finds no such interface and gets the error.
#[derive(Debug)]
pub(super) struct NapiDeferral {
    iface: String,
    /// The earlier `napi_defer_hard_irqs` and `gro_flush_timeout` (ns).
    before: [(&'static str, String); 2],
}

impl NapiDeferral {
    /// Defers the interface's own receive poll for `busy_poll.hold_us` after
    /// each of the dataplane's busy polls.
    ///
    /// # Errors
    /// [`DriverError::Config`] with the file and the error when sysfs cannot
    /// be read or written (not root, or no such attribute on this kernel).
    pub(super) fn apply(iface: &str, busy_poll: BusyPoll) -> Result<NapiDeferral, DriverError> {
        let hold_ns = u64::from(busy_poll.hold_us) * 1_000;
        let wanted =
            [("napi_defer_hard_irqs", DEFER_HARD_IRQS.to_string()), ("gro_flush_timeout", hold_ns.to_string())];
        let mut before = [("napi_defer_hard_irqs", String::new()), ("gro_flush_timeout", String::new())];
        for (slot, (name, _)) in before.iter_mut().zip(&wanted) {
            slot.1 = read(iface, name)?;
        }
        let deferral = NapiDeferral { iface: iface.to_owned(), before };
        for (name, value) in &wanted {
            write(iface, name, value)?;
        }
        tracing::info!(iface, defer_hard_irqs = DEFER_HARD_IRQS, hold_ns, "NAPI deferral set for busy polling");
        Ok(deferral)
    }
}

impl Drop for NapiDeferral {
    fn drop(&mut self) {
        for (name, value) in &self.before {
            if let Err(error) = write(&self.iface, name, value) {
                tracing::warn!(iface = %self.iface, %error, "could not restore the interface's NAPI setting");
            }
        }
    }
}

fn attribute(iface: &str, name: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(iface).join(name)
}

fn read(iface: &str, name: &str) -> Result<String, DriverError> {
    let path = attribute(iface, name);
    std::fs::read_to_string(&path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| DriverError::Config(format!("busy_poll: reading {}: {error}", path.display())))
}

fn write(iface: &str, name: &str, value: &str) -> Result<(), DriverError> {
    let path = attribute(iface, name);
    std::fs::write(&path, value).map_err(|error| {
        DriverError::Config(format!("busy_poll: writing {value} to {} (needs root): {error}", path.display()))
    })
}
